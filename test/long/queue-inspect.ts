// Long run (outside CI; src/queue/view/view.test.ts holds the bounded checks): the operator's
// read-only commands on a large queue. N messages are written straight into a queue directory
// (fdatasync off), held by the operator so nothing delivers them, spread over D recipient domains
// and S senders and over three hours of arrival times; then `logmta serve` recovers it and
// `logmta queue summary` / `queue list` run against it with and without filters. For each
// command: wall time (CLI start to exit) and the daemon's RSS before, peak while it ran, after.
// Usage: node dist/test/long/queue-inspect.js [--messages 100000] [--domains 500] [--senders 50]
//        [--repeat 2] [--keep]
// Prints a table and a JSON line; exit code 0 when every command succeeded.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Queue } from '../../src/queue/queue.js';
import { MiB, rssOf } from '../support/bigmail.js';
import { runLogmta, spawnDaemon } from '../support/daemon.js';

async function fill(queueDir: string, n: number, domains: number, senders: number): Promise<number> {
  const q = await Queue.open({ dir: queueDir, sync: false });
  const data = [Buffer.from(`Subject: inspect\r\n\r\n${'x'.repeat(72)}\r\n`.repeat(12))];
  const now = Date.now();
  let next = 0;
  const t0 = performance.now();
  const producer = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const rcpts = [{ address: `u${i}@d${i % domains}.example` }];
      if (i % 10 === 0) rcpts.push({ address: `v${i}@d${(i * 7 + 3) % domains}.example` });
      await q.accept({
        data,
        sender: `s${i % senders}@src${i % 7}.test`,
        recipients: rcpts,
        destinations: rcpts.map(() => ({ kind: 'hold' as const })),
        arrival: now - ((i * 7919) % (3 * 3_600_000)),
      });
    }
  };
  await Promise.all(Array.from({ length: 64 }, producer));
  await q.stop();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '100000' },
      domains: { type: 'string', default: '500' },
      senders: { type: 'string', default: '50' },
      repeat: { type: 'string', default: '2' },
      keep: { type: 'boolean', default: false },
    },
  });
  const n = Number(values.messages);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logmta-inspect-'));
  const fillMs = await fill(
    path.join(dir, 'data', 'queue'),
    n,
    Number(values.domains),
    Number(values.senders),
  );
  process.stdout.write(`filled ${n} messages in ${(fillMs / 1000).toFixed(1)} s\n`);
  const d = await spawnDaemon({
    toml: 'hostname = "inspect.test"\n[log]\nlevel = "warn"\n',
    dir,
    startTimeoutMs: 120_000,
  });
  const pid = d.child.pid;
  const commands: string[][] = [
    ['summary'],
    ['summary'],
    ['summary', '--domain', 'd7.example'],
    ['summary', '--sender', 's3@src3.test'],
    ['summary', '--older-than', '2h'],
    ['list', '--domain', 'd7.example'],
    ['list', '--sender', 's3@src3.test', '--limit', '100'],
    ['list', '--limit', '100'],
    ['list'],
  ];
  const rows: Array<{
    cmd: string;
    ms: number;
    before: number;
    peak: number;
    after: number;
    out: number;
    code: number | null;
  }> = [];
  for (let r = 0; r < Number(values.repeat); r++) {
    for (const c of commands) {
      const before = rssOf(pid);
      let peak = before;
      const t = setInterval(() => {
        peak = Math.max(peak, rssOf(pid));
      }, 20);
      const t0 = performance.now();
      const res = await runLogmta(['queue', ...c, '--json', '--config', d.configFile!], {
        timeoutMs: 600_000,
      });
      const ms = performance.now() - t0;
      clearInterval(t);
      rows.push({
        cmd: `queue ${c.join(' ')}`,
        ms,
        before,
        peak: Math.max(peak, rssOf(pid)),
        after: rssOf(pid),
        out: res.stdout.length,
        code: res.code,
      });
    }
  }
  process.stdout.write(`messages ${n}, domains ${values.domains}, senders ${values.senders}\n`);
  process.stdout.write(
    'command                                          time(s)  RSS before→peak→after (MiB)  output\n',
  );
  for (const x of rows)
    process.stdout.write(
      `${x.cmd.padEnd(48)} ${(x.ms / 1000).toFixed(2).padStart(7)}  ${fmt(x.before)} → ${fmt(x.peak)} → ${fmt(x.after)}  ${(x.out / 1024).toFixed(0)} KiB${x.code === 0 ? '' : ` exit ${x.code}`}\n`,
    );
  process.stdout.write(`${JSON.stringify({ messages: n, rows })}\n`);
  await d.stop();
  if (values.keep) process.stdout.write(`kept ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
  process.exitCode = rows.every((x) => x.code === 0) ? 0 : 1;
}

const fmt = (b: number): string => (b / MiB).toFixed(0).padStart(5);

main().catch((e) => {
  process.stderr.write(`queue-inspect: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 2;
});
