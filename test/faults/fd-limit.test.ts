// File descriptors under a low `ulimit -n`, as an operator meets it: a backlog of deferred mail
// in small segments, a restart, then `logmta queue flush`, which makes the daemon read back every
// deferred envelope and its data at once. The read cache must open each segment once however
// many reads race for it, and close the descriptors of segments it unlinks; before the fix every
// racing read opened its own descriptor and only one was kept, so the daemon ran out (EMFILE on
// every delivery, EPIPE on the control socket) and kept deleted segments open.
// Bounded for CI: LOGMTA_FD_MESSAGES (default 1000) deferred messages, LOGMTA_FD_LIMIT (default
// 512) files. The figures in docs/reliability.md come from LOGMTA_FD_MESSAGES=5000
// LOGMTA_FD_LIMIT=1024.
// Fails: naming the peak and final descriptor counts, the messages not delivered, or the
// control command that failed.
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import {
  closedPort,
  LOGMTA_BIN,
  makeTempDir,
  runTool,
  SmtpChat,
  type SpawnedDaemon,
  spawnDaemon,
  testToml,
  waitFor,
} from '../support/daemon.js';
import { peakRssOf, rssOf } from '../support/bigmail.js';
import { SmtpSink } from '../support/sink.js';

const MESSAGES = Number(process.env.LOGMTA_FD_MESSAGES ?? 1000);
const LIMIT = Number(process.env.LOGMTA_FD_LIMIT ?? 512);
const CONNECTIONS = 10;
const mib = (b: number) => Math.round(b / 2 ** 20);

const dir = makeTempDir('logmta-fds-');
let daemon: SpawnedDaemon | undefined;
let sink: SmtpSink | undefined;
after(async () => {
  await daemon?.stop(2_000);
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

const config = (port: number) => `
[smtp]
relay_networks = ["127.0.0.0/8"]
[[route]]
domain = "*"
host = "127.0.0.1:${port}"
[queue]
retry = ["1h"]
segment_size = "256KiB"
[delivery]
concurrency_per_destination = 10
`;

/** Descriptors of a process, and how many of them point at deleted files. */
function fdsOf(pid: number): { open: number; deleted: number } {
  let open = 0;
  let deleted = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    open++;
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).endsWith('(deleted)')) deleted++;
    } catch {
      // closed while we looked
    }
  }
  return { open, deleted };
}

async function sendAll(port: number, total: number): Promise<number> {
  let next = 0;
  let acked = 0;
  const body = `${'x'.repeat(76)}\r\n`.repeat(24); // ~1.9 KB: a 256 KiB segment holds ~130
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      const { chat } = await SmtpChat.open(port);
      await chat.ask('EHLO fds.test\r\n');
      for (let n = next++; n < total; n = next++) {
        const r = await chat.ask(`MAIL FROM:<a@fds.test>\r\nRCPT TO:<rcpt${n}@remote.test>\r\nDATA\r\n`, 3);
        assert.deepEqual(
          r.map((x) => x.slice(0, 3)),
          ['250', '250', '354'],
        );
        const [end] = await chat.ask(`Subject: fd ${n}\r\n\r\n${body}.\r\n`);
        assert.match(end!, /^250 /);
        acked++;
      }
      await chat.ask('QUIT\r\n');
      chat.close();
    }),
  );
  return acked;
}

test(`a flush of ${MESSAGES} deferred messages under ulimit -n ${LIMIT} delivers them all without running out of descriptors`, {
  skip: process.platform === 'linux' ? false : 'needs /proc (Linux)',
  timeout: 600_000,
}, async (t) => {
  const cfg = `${dir}/logmta.toml`;
  // 1. A backlog: every message deferred (its host refuses) into 256 KiB segments.
  daemon = await spawnDaemon({ dir, toml: config(await closedPort()) });
  const queue = (args: string[]) =>
    runTool(process.execPath, [LOGMTA_BIN, 'queue', ...args, '--config', cfg]);
  const t0 = Date.now();
  assert.equal(await sendAll(daemon.port, MESSAGES), MESSAGES);
  const deferred = async () => {
    const r = await queue(['summary', '--json', '--lane', 'retry']);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { total: { total: number } }).total.total;
  };
  let n = 0;
  for (let i = 0; i < 600 && n < MESSAGES; i++) {
    n = await deferred();
    if (n < MESSAGES) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(n, MESSAGES, 'every message deferred');
  t.diagnostic(`${MESSAGES} messages queued and deferred in ${Date.now() - t0} ms`);
  await daemon.stop();

  // 2. Restart under a low descriptor limit with the destination up, then flush.
  sink = await SmtpSink.start();
  writeFileSync(cfg, testToml(config(sink.port), `${dir}/data`));
  daemon = await spawnDaemon({ dir, args: ['--config', cfg], ulimitFiles: LIMIT });
  const pid = daemon.child.pid!;
  const base = fdsOf(pid).open;
  const rss0 = rssOf(pid);
  let peak = base;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, fdsOf(pid).open);
    } catch {
      // exited
    }
  }, 5);
  const t1 = Date.now();
  try {
    const f = await queue(['flush']);
    assert.equal(f.code, 0, `queue flush: ${f.stderr}`);
    // Progress, not a fixed deadline: fail once deliveries stop advancing for 30 s.
    let seen = 0;
    let lastProgress = Date.now();
    await waitFor(
      () => {
        const got = sink!.transactions.length;
        if (got > seen) [seen, lastProgress] = [got, Date.now()];
        if (Date.now() - lastProgress > 30_000)
          throw new Error(
            `deliveries stalled at ${got} of ${MESSAGES}; daemon descriptors ${fdsOf(pid).open} (peak ${peak})`,
          );
        return got >= MESSAGES;
      },
      `${MESSAGES} deliveries`,
      300_000,
    );
  } finally {
    clearInterval(sampler);
  }
  const ms = Date.now() - t1;
  const rcpts = new Set(sink.transactions.flatMap((x) => x.recipients));
  assert.equal(rcpts.size, MESSAGES, 'each message delivered');
  // The control socket still answers, and the queue is empty.
  let left = -1;
  for (let i = 0; i < 100 && left !== 0; i++) {
    left = await deferred();
    if (left !== 0) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(left, 0, 'queue empty after the flush');
  // Every segment of the backlog has been unlinked: none may still be held open.
  let after = fdsOf(pid);
  for (let i = 0; i < 200 && after.deleted > 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    after = fdsOf(pid);
  }
  t.diagnostic(
    `flush delivered ${MESSAGES} in ${ms} ms (${sink.transactions.length - rcpts.size} duplicates); descriptors: ${base} at start, peak ${peak}, ${after.open} after (${after.deleted} on deleted files); limit ${LIMIT}; RSS ${mib(rss0)} MiB at start, peak ${mib(peakRssOf(pid))}, ${mib(rssOf(pid))} after`,
  );
  assert.equal(after.deleted, 0, 'descriptors left open on deleted segments');
  assert.ok(peak < LIMIT * 0.75, `peak of ${peak} descriptors is too close to the limit of ${LIMIT}`);
  assert.doesNotMatch(daemon.stderr() + daemon.stdout(), /EMFILE/, 'the daemon ran out of descriptors');
});
