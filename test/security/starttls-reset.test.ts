// RFC 3207 §4.2 against a real `logmta serve`: after the TLS handshake the server forgets
// everything the client said in plaintext — the AUTH identity included — on all three kinds
// of listener (MTA, submission, ODMR). Plaintext before STARTTLS may come from an attacker in
// the path; if the identity survived, an injected `AUTH` would fix the encrypted session to the
// attacker's account (or a client that authenticated in the clear would keep relaying).
// Also: commands pipelined in plaintext after STARTTLS are discarded, never executed.
// Fails: naming the listener and the reply that showed the identity survived.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { TLS_TOML, tlsFiles } from '../support/certs.js';
import { firstLine, SmtpChat, type SpawnedDaemon, spawnDaemon } from '../support/daemon.js';

let d: SpawnedDaemon;
let odmrPort = 0;
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const PLAIN = `AUTH PLAIN ${b64('\0alice\0pw-alice')}`;

before(async () => {
  d = await spawnDaemon({
    files: await tlsFiles(),
    toml: [
      '[smtp]',
      'listen = ["127.0.0.1:0"]',
      'submission = ["127.0.0.1:0"]',
      TLS_TOML,
      '[[user]]',
      'name = "alice"',
      'password = "pw-alice"',
      '[odmr]',
      'listen = ["127.0.0.1:0"]',
      '[[odmr.account]]',
      'user = "cust"',
      'password = "pw-cust"',
      'domains = ["cust.test"]',
    ].join('\n'),
  });
  const m = /ODMR \(ATRN\) on 127\.0\.0\.1:(\d+)/.exec(d.stderr());
  odmrPort = Number(m?.[1] ?? 0);
  assert.ok(odmrPort > 0, d.stderr());
});

after(async () => {
  await d.stop();
});

/** Greeting read, EHLO sent; returns the chat. */
async function open(port: number): Promise<SmtpChat> {
  const { chat, greeting } = await SmtpChat.open(port);
  assert.match(greeting, /^220 /);
  assert.match((await chat.ask('EHLO client.test\r\n'))[0] ?? '', /^250/);
  return chat;
}

/** STARTTLS, handshake, EHLO again; returns the EHLO reply (all lines). */
async function startTls(chat: SmtpChat, pipelined = ''): Promise<string> {
  assert.match((await chat.ask(`STARTTLS\r\n${pipelined}`))[0] ?? '', /^220 2\.0\.0 /);
  await chat.startTls();
  chat.send('EHLO client.test\r\n');
  const [ehlo = ''] = await chat.read(1);
  assert.match(ehlo, /^250/);
  return ehlo;
}

describe('AUTH does not survive STARTTLS (RFC 3207 4.2)', () => {
  test('MTA listener: AUTH in plaintext, then STARTTLS: relaying needs AUTH again', async () => {
    const chat = await open(d.port);
    try {
      assert.deepEqual(await chat.ask(`${PLAIN}\r\n`), ['235 2.7.0 Authentication successful']);
      // Authenticated in plaintext: relaying is allowed here (the positive control).
      assert.match(
        (await chat.ask('MAIL FROM:<alice@localhost>\r\nRCPT TO:<x@foreign.test>\r\nRSET\r\n', 3))[1] ?? '',
        /^250 /,
      );
      const ehlo = await startTls(chat);
      assert.match(ehlo, /250[ -]AUTH PLAIN LOGIN/, 'AUTH must be offered again inside TLS');
      const [mail, rcpt] = await chat.ask('MAIL FROM:<alice@localhost>\r\nRCPT TO:<x@foreign.test>\r\n', 2);
      assert.match(mail ?? '', /^250 /);
      assert.match(rcpt ?? '', /^554 5\.7\.1 /, 'the plaintext AUTH identity survived the handshake');
      // Authenticating again inside TLS works (and is not "503 already authenticated").
      assert.deepEqual(await chat.ask(`RSET\r\n${PLAIN}\r\n`, 2), [
        '250 2.0.0 Ok',
        '235 2.7.0 Authentication successful',
      ]);
    } finally {
      chat.close();
    }
  });

  test('submission listener: AUTH in plaintext, then STARTTLS: MAIL gets 530 until AUTH again', async () => {
    const chat = await open(d.submissionPort ?? 0);
    try {
      assert.deepEqual(await chat.ask(`${PLAIN}\r\n`), ['235 2.7.0 Authentication successful']);
      await startTls(chat);
      assert.match((await chat.ask('MAIL FROM:<alice@localhost>\r\n'))[0] ?? '', /^530 5\.7\.0 /);
      assert.deepEqual(await chat.ask(`${PLAIN}\r\n`), ['235 2.7.0 Authentication successful']);
      assert.match((await chat.ask('MAIL FROM:<alice@localhost>\r\n'))[0] ?? '', /^250 /);
    } finally {
      chat.close();
    }
  });

  test('ODMR listener: AUTH CRAM-MD5 in plaintext, then STARTTLS: ATRN gets 530 until AUTH again', async () => {
    const chat = await open(odmrPort);
    try {
      const [challenge = ''] = await chat.ask('AUTH CRAM-MD5\r\n');
      assert.match(challenge, /^334 /);
      const text = Buffer.from(challenge.slice(4), 'base64').toString('latin1');
      const digest = createHmac('md5', 'pw-cust').update(text).digest('hex');
      assert.match((await chat.ask(`${b64(`cust ${digest}`)}\r\n`))[0] ?? '', /^235 /);
      const ehlo = await startTls(chat);
      assert.match(ehlo, /250[ -]AUTH CRAM-MD5 PLAIN LOGIN/, 'AUTH must be offered again inside TLS');
      assert.match((await chat.ask('ATRN cust.test\r\n'))[0] ?? '', /^530 5\.7\.0 /);
      // Inside TLS the customer may authenticate (PLAIN now allowed) and is then told there is no mail.
      assert.match((await chat.ask(`AUTH PLAIN ${b64('\0cust\0pw-cust')}\r\n`))[0] ?? '', /^235 /);
      assert.match((await chat.ask('ATRN cust.test\r\n'))[0] ?? '', /^453 /);
    } finally {
      chat.close();
    }
  });
});

describe('plaintext pipelined after STARTTLS is discarded', () => {
  test('MTA listener: an AUTH injected behind STARTTLS in the same packet is never executed', async () => {
    const chat = await open(d.port);
    try {
      const ehlo = await startTls(chat, `${PLAIN}\r\nMAIL FROM:<evil@evil.test>\r\n`);
      assert.match(ehlo, /250[ -]AUTH /, 'the injected AUTH was executed');
      const [mail, rcpt] = await chat.ask('MAIL FROM:<alice@localhost>\r\nRCPT TO:<x@foreign.test>\r\n', 2);
      assert.match(mail ?? '', /^250 /, 'an injected MAIL left a transaction open');
      assert.match(rcpt ?? '', /^554 5\.7\.1 /);
    } finally {
      chat.close();
    }
  });

  test('submission and ODMR listeners: commands injected behind STARTTLS are not executed', async () => {
    for (const [port, what] of [
      [d.submissionPort ?? 0, 'submission'],
      [odmrPort, 'ODMR'],
    ] as const) {
      const chat = await open(port);
      try {
        const ehlo = await startTls(chat, `AUTH PLAIN ${b64('\0cust\0pw-cust')}\r\n${PLAIN}\r\n`);
        assert.match(ehlo, /250[ -]AUTH /, `${what}: the injected AUTH was executed`);
        // The first reply inside TLS is the one to our EHLO: nothing of the injection answered.
        const [next = ''] = await chat.ask('NOOP\r\n');
        assert.ok(/^(250|502) /.test(firstLine(next)), `${what}: ${next}`);
      } finally {
        chat.close();
      }
    }
  });
});
