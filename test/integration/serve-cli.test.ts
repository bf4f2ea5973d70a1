// `logmta serve` as a child process: what it prints, where it keeps its data with no
// configuration, the exit code for a bad configuration, and the crash-only stop: SIGTERM lets a
// transaction in flight get its reply, refuses the rest with 421, exits 0 within the grace
// period, and the next start recovers the queue from the log.

import assert from 'node:assert/strict';
import { realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  codeOf,
  hasTool,
  makeTempDir,
  runLogmta,
  runTool,
  type SpawnedDaemon,
  SmtpChat,
  spawnDaemon,
  waitFor,
  waitForMaildir,
} from '../support/daemon.js';

const dirs: string[] = [];
const children: SpawnedDaemon[] = [];
function tempDir(): string {
  const d = realpathSync(makeTempDir('logmta-serve-'));
  dirs.push(d);
  return d;
}

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** The JSON log lines of a child with the given msg. */
function logLines(c: SpawnedDaemon, msg: string): Record<string, unknown>[] {
  return c
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((o) => o.msg === msg);
}

async function sendOne(
  port: number,
  rcpt: string,
  subject: string,
  from = 's@example.org',
): Promise<string[]> {
  const { chat } = await SmtpChat.open(port);
  try {
    const r = await chat.ask(`EHLO cli.test\r\nMAIL FROM:<${from}>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`, 4);
    const end = await chat.ask(`Subject: ${subject}\r\n\r\nbody\r\n.\r\nQUIT\r\n`, 2);
    return [...r, ...end].map(codeOf);
  } finally {
    chat.close();
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

describe('logmta serve', () => {
  test('with only --listen 127.0.0.1:0 in an empty directory: prints the real port and ./logmta-data, delivers to alice', async () => {
    const dir = tempDir();
    const c = await spawnDaemon({ dir, args: ['--listen', '127.0.0.1:0'] });
    children.push(c);
    assert.match(c.stderr(), /^logmta: SMTP on 127\.0\.0\.1:\d+; data in \S+\n/m);
    assert.ok(c.port > 0, `printed port ${c.port}`);
    assert.equal(c.dataDir, join(dir, 'logmta-data'));
    const to = 'alice@localhost';
    if (hasTool('swaks')) {
      const r = await runTool('swaks', [
        '--server',
        `127.0.0.1:${c.port}`,
        '--to',
        to,
        '--from',
        'bob@example.org',
      ]);
      assert.equal(r.code, 0, r.stdout);
    } else {
      // The same message without swaks (the README's second command on a fresh machine).
      assert.deepEqual((await sendOne(c.port, to, 'no swaks', 'bob@example.org')).slice(-2), [
        '250 2.0.0',
        '221 2.0.0',
      ]);
    }
    const [m] = await waitForMaildir(join(dir, 'logmta-data', 'mail', 'alice'));
    assert.match(m ?? '', /^Return-Path: <bob@example\.org>\nDelivered-To: alice@localhost\n/);
    // SIGINT stops it as well as SIGTERM does.
    c.kill('SIGINT');
    assert.deepEqual(await c.exited, { code: 0, signal: null });
  });

  test('with no arguments at all it listens on 127.0.0.1:2525', async (t) => {
    if (!(await portFree(2525))) {
      t.skip('127.0.0.1:2525 is in use on this machine');
      return;
    }
    const dir = tempDir();
    const c = await spawnDaemon({ dir, args: [] });
    children.push(c);
    assert.equal(c.port, 2525, c.stderr());
    assert.equal(c.dataDir, join(dir, 'logmta-data'));
    assert.deepEqual(await c.stop(), { code: 0, signal: null });
  });

  test('a SIGTERM right after the address is printed still stops it cleanly (exit 0, not death by signal)', async () => {
    for (let i = 0; i < 5; i++) {
      const c = await spawnDaemon({ dir: tempDir(), args: ['--listen', '127.0.0.1:0'] });
      children.push(c);
      assert.deepEqual(await c.stop(), { code: 0, signal: null }, `round ${i}: ${c.stderr()}`);
    }
  });

  test('a second signal during the grace period exits at once with status 1', async () => {
    const c = await spawnDaemon({ dir: tempDir(), args: ['--listen', '127.0.0.1:0'] });
    children.push(c);
    const { chat } = await SmtpChat.open(c.port);
    try {
      await chat.ask('EHLO a\r\nMAIL FROM:<s@example.org>\r\n', 2); // holds a transaction open
      const t0 = Date.now();
      c.kill('SIGTERM');
      await waitFor(() => c.stdout().includes('"stopping"'), 'the stop to begin');
      c.kill('SIGINT');
      assert.deepEqual(await c.exited, { code: 1, signal: null });
      assert.ok(Date.now() - t0 < 4_000, 'did not wait for the grace period');
    } finally {
      chat.close();
    }
  });

  test('an invalid configuration exits 78 naming every bad key', async () => {
    const dir = tempDir();
    const file = join(dir, 'bad.toml');
    writeFileSync(
      file,
      '[smtp]\nmax_recipients = "lots"\nlisen = ["127.0.0.1:25"]\n[[route]]\nhost = "x:y"\n',
    );
    const r = await runLogmta(['serve', '--config', file], { cwd: dir });
    assert.equal(r.code, 78, r.stderr);
    assert.match(r.stderr, /^logmta: invalid configuration:\n/);
    assert.match(r.stderr, /bad\.toml: smtp\.max_recipients: expected a positive integer/);
    assert.match(r.stderr, /bad\.toml: smtp\.lisen: unknown key \(did you mean "listen"\?\)/);
    assert.match(r.stderr, /bad\.toml: route\[1\]\.domain: /);
    // A file that does not exist is a configuration error too.
    const missing = await runLogmta(['serve', '--config', join(dir, 'nope.toml')], { cwd: dir });
    assert.equal(missing.code, 78);
    assert.match(missing.stderr, /nope\.toml: cannot read the configuration file \(ENOENT\)/);
    // A bad --listen is named as such.
    const badListen = await runLogmta(['serve', '--listen', 'localhost:x'], { cwd: dir });
    assert.equal(badListen.code, 78);
    assert.match(badListen.stderr, /--listen/);
    const usage = await runLogmta(['serve', '--frobnicate'], { cwd: dir });
    assert.equal(usage.code, 64);
  });

  test('a listener port already in use: exits 70 by itself naming the address and key; the next start works', async () => {
    const dir = tempDir();
    const holder = createServer();
    await new Promise<void>((res) => holder.listen(0, '127.0.0.1', () => res()));
    const port = (holder.address() as { port: number }).port;
    // The failing listener is the last to open: the queue, the ODMR and the first SMTP listener
    // are already running when it fails, and must be stopped, not left to process.exit.
    const toml =
      `[smtp]\nlisten = ["127.0.0.1:0"]\nsubmission = ["127.0.0.1:${port}"]\n` +
      '[odmr]\nlisten = ["127.0.0.1:0"]\n[[odmr.account]]\nuser = "c"\npassword = "p"\ndomains = ["c.example"]\n';
    writeFileSync(join(dir, 'logmta.toml'), toml);
    try {
      const t0 = Date.now();
      const r = await runLogmta(['serve', '--config', join(dir, 'logmta.toml')], { cwd: dir });
      assert.equal(r.code, 70, r.stderr);
      assert.equal(r.signal, null);
      assert.match(
        r.stderr,
        new RegExp(
          `^logmta: cannot start: cannot listen on 127\\.0\\.0\\.1:${port} \\(smtp\\.submission\\[1\\]\\): the address is already in use`,
          'm',
        ),
      );
      assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms to exit`);
      assert.match(r.stdout, /"start failed; stopping what was started"/);
      // A port-25 style listener is named by its key too: smtp.listen.
      const l = await runLogmta(
        ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'other')],
        {
          cwd: dir,
        },
      );
      assert.equal(l.code, 70, l.stderr);
      assert.match(l.stderr, /\(smtp\.listen\[1\]\): the address is already in use/);
    } finally {
      await new Promise<void>((res) => holder.close(() => res()));
    }
    // Nothing of the failed start is in the way: the same configuration starts on the same data.
    const c = await spawnDaemon({ dir, args: ['--config', join(dir, 'logmta.toml')] });
    children.push(c);
    assert.equal(c.submissionPort, port, c.stderr());
    assert.deepEqual(await c.stop(), { code: 0, signal: null });
  });

  test('SIGTERM after a burst of mail: every event line reaches stdout, up to the last one ("stopped")', async () => {
    // The log is buffered (32 KiB or 100 ms): what is still in memory at the stop must be written
    // at exit, not lost.
    const dir = tempDir();
    const c = await spawnDaemon({ dir, args: ['--listen', '127.0.0.1:0'] });
    children.push(c);
    const n = 20;
    for (let i = 0; i < n; i++)
      assert.equal((await sendOne(c.port, 'alice@localhost', `m${i}`)).at(-2), '250 2.0.0');
    await waitForMaildir(join(dir, 'logmta-data', 'mail', 'alice'), n);
    c.kill('SIGTERM');
    assert.deepEqual(await c.exited, { code: 0, signal: null }, c.stderr());
    // The pipe may deliver its last bytes just after the exit event.
    await waitFor(() => logLines(c, 'stopped').length === 1, 'the "stopped" line');
    assert.equal(logLines(c, 'received').length, n);
    assert.equal(logLines(c, 'delivered').length, n);
    assert.equal(logLines(c, 'stopping').length, 1);
  });

  // Both ways of running the SMTP sessions: on the main thread, and in the session thread.
  for (const thread of [false, true])
    test(`SIGTERM: the transaction in flight gets its 250, idle clients 421, exit 0 within the grace; the next start recovers${thread ? ' (session thread)' : ''}`, async () => {
      const dir = tempDir();
      // Mail for far.example can never be delivered (port 1 refuses), so it stays queued.
      const toml = `[smtp]\nrelay_networks = ["127.0.0.0/8"]\nsession_thread = ${thread}\n[[route]]\ndomain = "*"\nhost = "127.0.0.1:1"\n[queue]\nretry = ["1h"]\n`;
      const c = await spawnDaemon({ dir, toml });
      children.push(c);
      const queued = await sendOne(c.port, 'x@far.example', 'queued before the stop');
      assert.equal(queued.at(-2), '250 2.0.0');

      // One client in the middle of DATA, one idle after EHLO, one that stalls inside a transaction.
      const { chat: busy } = await SmtpChat.open(c.port);
      assert.deepEqual(
        (await busy.ask('EHLO a\r\nMAIL FROM:<s@example.org>\r\nRCPT TO:<y@far.example>\r\nDATA\r\n', 4)).map(
          codeOf,
        ),
        ['250', '250 2.1.0', '250 2.1.5', '354'],
      );
      busy.send('Subject: in flight\r\n\r\nfirst half\r\n');
      const { chat: idle } = await SmtpChat.open(c.port);
      await idle.ask('EHLO b\r\n');
      const { chat: stalled } = await SmtpChat.open(c.port);
      await stalled.ask('EHLO c\r\nMAIL FROM:<s@example.org>\r\n', 2);

      const t0 = Date.now();
      c.kill('SIGTERM');
      const [bye] = await idle.read(1);
      assert.equal(codeOf(bye ?? ''), '421 4.3.2');
      await idle.waitClosed();
      // New connections are no longer accepted (the listening socket closed before the 421s).
      await assert.rejects(SmtpChat.connect(c.port), /ECONNREFUSED/);

      busy.send('second half\r\n.\r\nNOOP\r\n');
      const r = (await busy.read(2)).map(codeOf);
      assert.deepEqual(r, ['250 2.0.0', '421 4.3.2'], 'the message is accepted, then the session ends');
      await busy.waitClosed();

      const exit = await c.exited;
      const took = Date.now() - t0;
      assert.deepEqual(exit, { code: 0, signal: null }, c.stderr() + c.stdout());
      // The stalled client holds its transaction open: the daemon waits out the 5 s grace, no more.
      assert.ok(took < 8_000, `exited ${took} ms after SIGTERM`);
      await stalled.waitClosed();
      stalled.close();

      const again = await spawnDaemon({ dir, toml });
      children.push(again);
      await waitFor(() => logLines(again, 'recovered queue').length > 0, 'the recovery log line');
      const rec = logLines(again, 'recovered queue')[0] ?? {};
      assert.equal(rec.messages, 2, JSON.stringify(rec));
      assert.equal(rec.corruptions, 0);
      assert.deepEqual(await again.stop(), { code: 0, signal: null });
    });
});
