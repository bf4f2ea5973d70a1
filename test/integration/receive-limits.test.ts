// Limits and bad input over a real socket against a whole in-process daemon: each case sends
// exactly the bytes in question and checks the reply the RFCs expect (and that nothing was
// half-accepted). The policies themselves are documented in docs/smtp-server.md; the session
// tests (src/smtp/server/session.test.ts) drive the same cases without sockets.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  codeOf,
  maildirMessages,
  SmtpChat,
  startTestDaemon,
  type TestDaemon,
  waitFor,
  waitForMaildir,
} from '../support/daemon.js';

let d: TestDaemon;
const open: SmtpChat[] = [];

async function session(helo = 'EHLO limits.test\r\n'): Promise<SmtpChat> {
  const { chat, greeting } = await SmtpChat.open(d.port);
  open.push(chat);
  assert.match(greeting, /^220 mx\.test /);
  if (helo) assert.equal(codeOf((await chat.ask(helo))[0] ?? ''), '250');
  return chat;
}

const box = (u: string) => `${d.dataDir}/mail/${u}`;
const codes = (rs: string[]) => rs.map(codeOf);
const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('limits and bad input over a socket', () => {
  before(async () => {
    d = await startTestDaemon({
      toml: `
[smtp]
max_message_size = "64KiB"
max_recipients = 100
idle_timeout = "1500ms"
[[user]]
name = "alice"
password = "secret"
`,
    });
  });
  after(async () => {
    for (const c of open) c.close();
    await d?.stop();
  });

  test('a command line over 512 octets: 500 5.5.6, and the session goes on', async () => {
    const c = await session();
    const r = await c.ask(`MAIL FROM:<${'a'.repeat(600)}@example.org>\r\nNOOP\r\n`, 2);
    assert.deepEqual(codes(r), ['500 5.5.6', '250 2.0.0']);
    // 512 octets exactly (with CRLF) is still a command.
    const ok = `NOOP ${'x'.repeat(512 - 7)}\r\n`;
    assert.equal(ok.length, 512);
    assert.deepEqual(codes(await c.ask(ok)), ['250 2.0.0']);
  });

  test('a data line over 1000 octets: 552 5.6.0 after the dot, nothing delivered', async () => {
    const c = await session();
    const r = await c.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<long@localhost>\r\nDATA\r\n', 3);
    assert.deepEqual(codes(r), ['250 2.1.0', '250 2.1.5', '354']);
    assert.deepEqual(codes(await c.ask(`Subject: x\r\n\r\n${'y'.repeat(999)}\r\n.\r\n`)), ['552 5.6.0']);
    // 998 octets + CRLF is the RFC 5321 limit and is fine.
    await c.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<long@localhost>\r\nDATA\r\n', 3);
    assert.deepEqual(codes(await c.ask(`Subject: ok\r\n\r\n${'y'.repeat(998)}\r\n.\r\n`)), ['250 2.0.0']);
    const msgs = await waitForMaildir(box('long'));
    assert.equal(msgs.length, 1);
    assert.match(msgs[0] ?? '', /Subject: ok\n/);
  });

  test('SIZE= over the limit is refused at MAIL; a client lying in SIZE= gets 552 5.3.4 after the data', async () => {
    const c = await session();
    assert.deepEqual(codes(await c.ask(`MAIL FROM:<s@example.org> SIZE=${64 * 1024 + 1}\r\n`)), [
      '552 5.3.4',
    ]);
    const r = await c.ask('MAIL FROM:<s@example.org> SIZE=100\r\nRCPT TO:<big@localhost>\r\nDATA\r\n', 3);
    assert.deepEqual(codes(r), ['250 2.1.0', '250 2.1.5', '354']);
    const body = `${'z'.repeat(78)}\r\n`.repeat(1000); // 80 000 octets > 64 KiB
    assert.deepEqual(codes(await c.ask(`Subject: big\r\n\r\n${body}.\r\n`)), ['552 5.3.4']);
    // The session is in sync after the refused body.
    assert.deepEqual(codes(await c.ask('NOOP\r\n')), ['250 2.0.0']);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(maildirMessages(box('big')).length, 0);
  });

  test('recipients beyond max_recipients get 452 4.5.3; the first 100 are kept', async () => {
    const c = await session();
    let burst = 'MAIL FROM:<s@example.org>\r\n';
    for (let i = 0; i < 101; i++) burst += `RCPT TO:<r${i}@localhost>\r\n`;
    const r = codes(await c.ask(burst, 102));
    assert.equal(r[0], '250 2.1.0');
    assert.deepEqual(new Set(r.slice(1, 101)), new Set(['250 2.1.5']));
    assert.equal(r[101], '452 4.5.3');
    assert.deepEqual(codes(await c.ask('RSET\r\n')), ['250 2.0.0']);
  });

  test('commands out of sequence get 503 5.5.1', async () => {
    const c = await session('');
    assert.deepEqual(codes(await c.ask('MAIL FROM:<s@example.org>\r\n')), ['503 5.5.1']);
    await c.ask('EHLO limits.test\r\n');
    const r = await c.ask('RCPT TO:<a@localhost>\r\nDATA\r\nBDAT 3 LAST\r\nabc', 3);
    assert.deepEqual(codes(r), ['503 5.5.1', '503 5.5.1', '503 5.5.1']);
    const r2 = await c.ask('MAIL FROM:<s@example.org>\r\nMAIL FROM:<s@example.org>\r\nAUTH PLAIN\r\n', 3);
    assert.deepEqual(codes(r2), ['250 2.1.0', '503 5.5.1', '503 5.5.1']);
    // DATA with no accepted recipient: RFC 5321 3.3 allows 503 or 554; we say 554.
    assert.deepEqual(codes(await c.ask('DATA\r\n')), ['554 5.5.1']);
  });

  test('unknown commands get 500 5.5.2, known unimplemented ones 502 5.5.1', async () => {
    const c = await session();
    assert.deepEqual(codes(await c.ask('FROB\r\nEXPN staff\r\nTURN\r\n', 3)), [
      '500 5.5.2',
      '502 5.5.1',
      '502 5.5.1',
    ]);
  });

  test('syntax errors in addresses and parameter values get 501, unknown parameters 555', async () => {
    const c = await session();
    const r = await c.ask(
      [
        'MAIL FROM:no-brackets@example.org',
        'MAIL FROM:<a@b@c>',
        'MAIL FROM:<s@example.org> FOO=bar',
        'MAIL FROM:<s@example.org> BODY=9BIT',
        'MAIL FROM:<s@example.org> SIZE=abc',
        'MAIL FROM:<s@example.org>',
        'RCPT TO:<>',
        'RCPT TO:<x@localhost> NOTIFY=SOMETIMES',
        'RCPT TO:<x@localhost> NOTIFY=NEVER,SUCCESS',
        'RCPT TO:<x@localhost> ORCPT=bad',
        '',
      ].join('\r\n'),
      10,
    );
    assert.deepEqual(codes(r), [
      '501 5.1.7',
      '501 5.1.7',
      '555 5.5.4',
      '501 5.5.4',
      '501 5.5.4',
      '250 2.1.0',
      '501 5.1.3',
      '501 5.5.4',
      '501 5.5.4',
      '501 5.5.4',
    ]);
  });

  test('bare LF in data is normalised; a "." after a bare LF does not end the data (no smuggling)', async () => {
    const c = await session();
    await c.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<lf@localhost>\r\nDATA\r\n', 3);
    // If "\n.\n" ended the data, "MAIL FROM:<evil@x>" would be read as a command.
    const r = await c.ask('Subject: lf\nX: y\r\n\r\nfirst\n.\nMAIL FROM:<evil@x>\r\n.\r\nNOOP\r\n', 2);
    assert.deepEqual(codes(r), ['250 2.0.0', '250 2.0.0']);
    const msgs = await waitForMaildir(box('lf'));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(maildirMessages(box('lf')).length, 1, 'one message, not two');
    // The "." line stayed content; like every leading dot it was taken as a stuffing dot.
    assert.match(msgs[0] ?? '', /Subject: lf\nX: y\n\nfirst\n\nMAIL FROM:<evil@x>\n$/);
  });

  test('bare CR and NUL in data: 550 5.6.0, nothing delivered, session in sync', async () => {
    const c = await session();
    for (const bad of ['Subject: cr\r\n\r\nab\rcd\r\n', 'Subject: nul\r\n\r\nab\0cd\r\n']) {
      await c.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<crnul@localhost>\r\nDATA\r\n', 3);
      assert.deepEqual(codes(await c.ask(`${bad}.\r\n`)), ['550 5.6.0']);
    }
    // BDAT too, including a CR at the very end of the last chunk.
    await c.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<crnul@localhost>\r\n', 2);
    assert.deepEqual(codes(await c.ask('BDAT 12\r\nSubject: x\r\n')), ['250 2.0.0']);
    assert.deepEqual(codes(await c.ask('BDAT 4 LAST\r\n\r\nx\r')), ['550 5.6.0']);
    assert.deepEqual(codes(await c.ask('NOOP\r\n')), ['250 2.0.0']);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(maildirMessages(box('crnul')).length, 0);
  });

  test('100 Received: fields are a mail loop: 554 5.4.6', async () => {
    const c = await session();
    await c.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<loop@localhost>\r\nDATA\r\n', 3);
    const hops = 'Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n'.repeat(100);
    assert.deepEqual(codes(await c.ask(`${hops}Subject: loop\r\n\r\nx\r\n.\r\n`)), ['554 5.4.6']);
    // 99 earlier hops plus ours is fine.
    await c.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<loop@localhost>\r\nDATA\r\n', 3);
    const ok = 'Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n'.repeat(99);
    assert.deepEqual(codes(await c.ask(`${ok}Subject: loop\r\n\r\nx\r\n.\r\n`)), ['250 2.0.0']);
  });

  test('too many bad commands: 421 4.7.0 and the connection is closed', async () => {
    const c = await session();
    const r = await c.ask('BOGUS\r\n'.repeat(10), 11);
    assert.deepEqual(codes(r).slice(-2), ['500 5.5.2', '421 4.7.0']);
    await c.waitClosed();
  });

  test('a client that sends nothing is closed with 421 4.4.2 after the idle timeout', async () => {
    const c = await session();
    const t0 = Date.now();
    const [r] = await c.read(1, 8_000);
    const waited = Date.now() - t0;
    assert.equal(codeOf(r ?? ''), '421 4.4.2');
    assert.ok(waited >= 1400 && waited < 6000, `closed after ${waited} ms (idle_timeout 1.5 s, sweep 1 s)`);
    await c.waitClosed();
  });

  test('AUTH failures from one address are answered later and later; a success clears them', async () => {
    const t = async (pw: string) => {
      const c = await session();
      const t0 = Date.now();
      const [r] = await c.ask(`AUTH PLAIN ${b64(`\0alice\0${pw}`)}\r\n`);
      c.close();
      return { code: codeOf(r ?? ''), ms: Date.now() - t0 };
    };
    const f1 = await t('bad1');
    const f2 = await t('bad2');
    assert.equal(f1.code, '535 5.7.8');
    assert.equal(f2.code, '535 5.7.8');
    assert.ok(f1.ms >= 900, `first failure answered after ${f1.ms} ms`);
    assert.ok(f2.ms >= 1900, `second failure answered after ${f2.ms} ms`);
    const ok = await t('secret');
    assert.equal(ok.code, '235 2.7.0');
    // Undelayed (a third failure would have waited 4 s).
    assert.ok(ok.ms < 3000, `a correct password is answered at once (${ok.ms} ms)`);
    const f3 = await t('bad3');
    // Back to the first delay (1 s) rather than the third (4 s).
    assert.ok(f3.ms >= 900 && f3.ms < 3500, `the success reset the delay (${f3.ms} ms)`);
  });
});

describe('connection limits', () => {
  test('beyond max_connections_per_ip and max_connections a client gets 421 4.7.0 and is closed', async () => {
    const ld = await startTestDaemon({ toml: '[smtp]\nmax_connections_per_ip = 2\nmax_connections = 3\n' });
    const chats: SmtpChat[] = [];
    const connect = async (from: string) => {
      const chat = await SmtpChat.connect(ld.port, '127.0.0.1', from);
      chats.push(chat);
      const [greeting = ''] = await chat.read(1);
      return { chat, greeting };
    };
    try {
      assert.match((await connect('127.0.0.1')).greeting, /^220 /);
      assert.match((await connect('127.0.0.1')).greeting, /^220 /);
      const third = await connect('127.0.0.1');
      assert.match(third.greeting, /^421 4\.7\.0 mx\.test Too many connections from 127\.0\.0\.1\r\n$/);
      await third.chat.waitClosed();
      // Another address still gets in, up to max_connections in total.
      assert.match((await connect('127.0.0.2')).greeting, /^220 /);
      const fourth = await connect('127.0.0.2');
      assert.match(fourth.greeting, /^421 4\.7\.0 mx\.test Too many connections\r\n$/);
      await fourth.chat.waitClosed();
      // A connection that went away frees its place.
      chats[0]?.close();
      const live = () => ld.daemon.listeners.reduce((n, l) => n + l.connections.size, 0);
      await waitFor(() => live() === 2, 'the server to see the connection gone');
      assert.match((await connect('127.0.0.1')).greeting, /^220 /);
    } finally {
      for (const c of chats) c.close();
      await ld.stop();
    }
  });
});
