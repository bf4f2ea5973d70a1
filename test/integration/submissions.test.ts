// The implicit-TLS submission listener (RFC 8314, port 465 style: [smtp] submissions) of a real
// `logmta serve`, with real TLS clients: Node's TLS client (always) and swaks --tlsc (where
// installed). TLS comes first — the greeting is only sent inside TLS, a plaintext client gets no
// SMTP at all — then the submission rules: AUTH before MAIL (530), after AUTH any recipient,
// relayed to the next hop; STARTTLS is not offered on top; the TLS policy of the STARTTLS
// listeners holds here too. The configuration refuses submissions without [tls].
// Fails: naming the reply, the swaks transcript or the finding.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { configFromToml } from '../../src/config/index.js';
import { TLS_TOML, tlsFiles } from '../support/certs.js';
import { codeOf, hasTool, runTool, SmtpChat, type SpawnedDaemon, spawnDaemon } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { tlsFindings } from '../support/tls-probe.js';

let d: SpawnedDaemon;
let sink: SmtpSink;
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

before(async () => {
  sink = await SmtpSink.start({});
  d = await spawnDaemon({
    files: await tlsFiles(),
    toml: [
      '[smtp]',
      'listen = ["127.0.0.1:0"]',
      'submissions = ["127.0.0.1:0"]',
      TLS_TOML,
      '[[user]]',
      'name = "alice"',
      'password = "pw-alice"',
      '[[route]]',
      'domain = "*"',
      `host = "127.0.0.1:${sink.port}"`,
    ].join('\n'),
  });
});

after(async () => {
  await d.stop();
  await sink.close();
});

describe('implicit-TLS submission (smtp.submissions)', () => {
  test('serve prints the listener; TLS first, then a greeting, no STARTTLS, AUTH required, mail relayed', async () => {
    assert.ok(d.submissionsPort !== undefined && d.submissionsPort > 0, d.stderr());
    const { chat, greeting, tls } = await SmtpChat.openTls(d.submissionsPort ?? 0);
    try {
      assert.match(greeting, /^220 mx\.test /);
      assert.match(tls.getProtocol() ?? '', /^TLSv1\.[23]$/);
      chat.send('EHLO client.test\r\n');
      const [ehlo = ''] = await chat.read(1);
      assert.match(ehlo, /250[ -]AUTH PLAIN LOGIN CRAM-MD5\r\n/);
      assert.doesNotMatch(ehlo, /STARTTLS/);
      assert.equal(codeOf((await chat.ask('STARTTLS\r\n'))[0] ?? ''), '502 5.5.1');
      assert.equal(codeOf((await chat.ask('MAIL FROM:<alice@localhost>\r\n'))[0] ?? ''), '530 5.7.0');
      assert.equal(
        codeOf((await chat.ask(`AUTH PLAIN ${b64('\0alice\0pw-alice')}\r\n`))[0] ?? ''),
        '235 2.7.0',
      );
      const r = await chat.ask('MAIL FROM:<alice@localhost>\r\nRCPT TO:<bob@far.example>\r\nDATA\r\n', 3);
      assert.deepEqual(r.map(codeOf), ['250 2.1.0', '250 2.1.5', '354']);
      assert.equal(codeOf((await chat.ask('Subject: over 465\r\n\r\nhello\r\n.\r\n'))[0] ?? ''), '250 2.0.0');
      assert.equal(codeOf((await chat.ask('QUIT\r\n'))[0] ?? ''), '221 2.0.0');
    } finally {
      chat.close();
    }
    await sink.waitForTransactions(1);
    const tx = sink.transactions[0];
    assert.deepEqual(tx?.recipients, ['bob@far.example']);
    const head = tx?.data.toString('latin1') ?? '';
    assert.match(head, /\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)/);
    assert.match(head, /\(authenticated sender: alice\)/);
    assert.match(head, /with ESMTPSA id /);
  });

  test('a plaintext client gets no SMTP: no greeting in the clear, and its commands are never read', async () => {
    const s = net.connect(d.submissionsPort ?? 0, '127.0.0.1');
    let got = '';
    s.setEncoding('latin1');
    s.on('data', (x: string) => {
      got += x;
    });
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write('EHLO plain.test\r\nAUTH PLAIN AGFsaWNlAHB3LWFsaWNl\r\nMAIL FROM:<a@b>\r\n');
    await new Promise<void>((r) => s.once('close', () => r()));
    assert.doesNotMatch(got, /^\d{3}[ -]/m, `the server spoke SMTP in plaintext: ${JSON.stringify(got)}`);
  });

  test('the TLS policy holds here too (no TLS 1.0/1.1, static RSA, CBC, client order, renegotiation)', async () => {
    assert.deepEqual(await tlsFindings({ port: d.submissionsPort ?? 0, implicit: true }), []);
  });

  test('swaks --tlsc with AUTH PLAIN relays a message', {
    skip: hasTool('swaks') ? false : 'swaks is not installed',
  }, async () => {
    const before = sink.transactions.length;
    const r = await runTool('swaks', [
      ...['--server', `127.0.0.1:${d.submissionsPort}`, '--tlsc'],
      ...['--auth', 'PLAIN', '--auth-user', 'alice', '--auth-password', 'pw-alice'],
      ...['--from', 'alice@localhost', '--to', 'carol@far.example', '--header', 'Subject: swaks over 465'],
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /TLS started/i);
    assert.match(r.stdout, /<~\s+235 /);
    await sink.waitForTransactions(before + 1);
    assert.deepEqual(sink.transactions[before]?.recipients, ['carol@far.example']);
  });

  test('submissions without [tls] is a configuration error naming the key', () => {
    assert.throws(
      () => configFromToml('[smtp]\nsubmissions = ["127.0.0.1:0"]\n'),
      /smtp\.submissions: needs \[tls\] \(cert and key\)/,
    );
  });
});
