// Slowloris against a real `logmta serve`, with the limits made small (command_timeout and
// data_line_timeout 1 s, min_data_rate 200 octets/s, idle_timeout 30 s so that silence cannot be
// what ends them): five clients trickle one byte every 100 ms — a command line, an AUTH LOGIN
// answer, one endless DATA line, DATA as short lines, a BDAT chunk — and one opens the
// implicit-TLS port and trickles its handshake. Each is cut about a second after it started
// (421 4.4.2 where SMTP is spoken), long before its trickle would have ended; an idle timer that
// every byte restarts would have kept all of them. Meanwhile a client at an ordinary pace, under
// the same limits, delivers its message. And a client that keeps the line with commands that
// do nothing (NOOP, RSET, VRFY, HELP), each in time, is closed after 100 of them and 10 more.
// Fails: naming the client that was not cut (or cut too early), or the message that was lost.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TLS_TOML, tlsFiles } from '../support/certs.js';
import {
  codeOf,
  SmtpChat,
  type SpawnedDaemon,
  spawnDaemon,
  waitFor,
  waitForMaildir,
} from '../support/daemon.js';
import { trickleAll } from '../support/slowloris.js';
import { peakRssOf, rssOf } from '../support/bigmail.js';

let d: SpawnedDaemon;
const STEP_MS = 100;

before(async () => {
  d = await spawnDaemon({
    files: await tlsFiles(),
    toml: [
      '[smtp]',
      'listen = ["127.0.0.1:0"]',
      'submissions = ["127.0.0.1:0"]',
      'idle_timeout = "30s"',
      'command_timeout = "1s"',
      'data_line_timeout = "1s"',
      'min_data_rate = 200',
      TLS_TOML,
      '[[user]]',
      'name = "alice"',
      'password = "pw"',
    ].join('\n'),
  });
});

after(async () => {
  await d.stop();
});

describe('slowloris: deadlines cut clients that trickle bytes (logmta serve, limits of 1 s)', () => {
  test('command line, AUTH answer, DATA line, DATA of short lines, BDAT chunk and TLS handshake are each cut; a normal client delivers', async (t) => {
    const normal = (async () => {
      const { chat } = await SmtpChat.open(d.port);
      try {
        const r = await chat.ask(
          'EHLO normal.test\r\nMAIL FROM:<n@example.org>\r\nRCPT TO:<carol@localhost>\r\nDATA\r\n',
          4,
        );
        assert.deepEqual(r.map(codeOf), ['250', '250 2.1.0', '250 2.1.5', '354']);
        // 40 lines of 100 octets, one every 50 ms: 2,000 octets/s, each line well in time.
        for (let i = 0; i < 40; i++) {
          chat.send(`${String(i).padStart(3, '0')} ${'n'.repeat(94)}\r\n`);
          await new Promise((res) => setTimeout(res, 50));
        }
        assert.equal(codeOf((await chat.ask('.\r\n'))[0] ?? ''), '250 2.0.0');
      } finally {
        chat.close();
      }
    })();
    const cuts = await trickleAll(d.port, d.submissionsPort ?? 0, STEP_MS, 200);
    await normal;
    for (const { what, cut: c, reply } of cuts) {
      assert.ok(c.unsent > 0, `${what}: never cut (the whole trickle went through in ${c.ms} ms)`);
      assert.ok(c.ms >= 900, `${what}: cut after ${c.ms} ms, before its deadline`);
      if (reply) assert.match(c.said, reply, `${what}: ${JSON.stringify(c.said)}`);
      else assert.doesNotMatch(c.said, /^\d{3} /m, `${what}: the server spoke SMTP in plaintext`);
      t.diagnostic(`${what}: cut after ${c.ms} ms with ${c.unsent} octets of its trickle unsent`);
    }
    assert.equal((await waitForMaildir(`${d.dataDir}/mail/carol`)).length, 1);
    // The daemon writes its log asynchronously: wait for the lines rather than count them now.
    const logged = () =>
      d
        .stdout()
        .split('\n')
        .filter((l) => l.includes('"smtp connection timed out"')).length;
    await waitFor(() => logged() >= 6, 'six timeouts logged');
    const mib = (b: number) => Math.round(b / 2 ** 20);
    t.diagnostic(`daemon RSS ${mib(rssOf(d.child.pid))} MiB after, peak ${mib(peakRssOf(d.child.pid))}`);
  });

  test('a client that only sends NOOP, RSET, VRFY and HELP, each in time, is closed after 100 and 10 more; one that sends mail between them is not', async () => {
    const junk = (n: number) =>
      Array.from({ length: n }, (_, i) => ['NOOP\r\n', 'RSET\r\n', 'VRFY carol\r\n', 'HELP\r\n'][i % 4]).join(
        '',
      );
    const { chat } = await SmtpChat.open(d.port);
    try {
      assert.equal(codeOf((await chat.ask('EHLO idler.test\r\n'))[0] ?? ''), '250');
      // Each command inside the 1 s command deadline: the deadline alone never ends this.
      for (let i = 0; i < 3; i++) {
        await new Promise((res) => setTimeout(res, 700));
        assert.equal(codeOf((await chat.ask('NOOP\r\n'))[0] ?? ''), '250 2.0.0');
      }
      const ordinary = await chat.ask(junk(97), 97);
      assert.deepEqual([...new Set(ordinary.map((r) => r.slice(0, 3)))].sort(), ['214', '250', '252']);
      const last = await chat.ask('NOOP\r\n'.repeat(10), 11);
      assert.deepEqual(last.slice(0, 10).map(codeOf), Array(10).fill('250 2.0.0'));
      assert.match(last[10] ?? '', /^421 4\.7\.0 .*too many commands without mail/);
      await chat.waitClosed();
    } finally {
      chat.close();
    }
    const b = (await SmtpChat.open(d.port)).chat;
    try {
      await b.ask('EHLO sender.test\r\n');
      await b.ask(junk(90), 90);
      const r = await b.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<carol@localhost>\r\nDATA\r\n', 3);
      assert.deepEqual(r.map(codeOf), ['250 2.1.0', '250 2.1.5', '354']);
      assert.equal(codeOf((await b.ask('Subject: between\r\n\r\nhi\r\n.\r\n'))[0] ?? ''), '250 2.0.0');
      const after90 = await b.ask(junk(90), 90);
      assert.ok(!after90.some((x) => x.startsWith('421')), 'a client that sends mail was closed');
      assert.equal(codeOf((await b.ask('QUIT\r\n'))[0] ?? ''), '221 2.0.0');
    } finally {
      b.close();
    }
  });
});
