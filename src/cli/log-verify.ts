// `logmta log verify [--json] [DIR]`: a read-only check of a queue directory. The check itself is
// the queue's (queue/verify.ts, under recovery's own rules); this file parses the command line,
// formats the report and maps its status to the exit code.
// Exit codes: 0 clean; 1 crash leftovers only, which the next start repairs (torn tails, live
// envelopes without data, incomplete moves); 2 corruption or missing segments; 64 usage;
// 66 no such queue directory; 75 the queue changed under the scan too often (a running daemon).
// On a queue a running daemon holds (its lock, queue/lock.ts), recovery has already repaired
// every crash leftover, so what looks like one is a batch being written: it is reported as in
// progress, exit 0. A segment the daemon frees while the scan runs restarts the scan.
import { parseArgs } from 'node:util';
import { parseCommand } from './args.js';
import {
  type LaneReport,
  NotAQueueError,
  queueInUse,
  type VerifyReport,
  type VerifyStatus,
  verifyQueue,
} from '../queue/index.js';

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const USAGE = 'usage: logmta log verify [--json] [DIR]   (default DIR ./logmta-data/queue)\n';

export function exitCodeOf(status: VerifyStatus): number {
  return status === 'clean' ? 0 : status === 'torn' ? 1 : 2;
}

const pct = (r: number) => `${(r * 100).toFixed(1)}%`;
const num = (n: number) => n.toLocaleString('en-US');

/** The human-readable report. */
export function formatReport(r: VerifyReport, inProgress = false): string {
  const head = ['lane', 'segs', 'bytes', 'data', 'env', 'delta', 'done', 'live env', 'live msgs', 'garbage'];
  const rows = r.lanes.map((l) => [
    l.name,
    num(l.segments),
    num(l.bytes),
    num(l.records.data),
    num(l.records.envelope),
    num(l.records.delta),
    num(l.records.done),
    num(l.liveEnvelopes),
    num(l.liveMessages),
    pct(l.garbageRatio),
  ]);
  const total = (k: keyof LaneReport['records']) => num(r.lanes.reduce((a, l) => a + l.records[k], 0));
  rows.push([
    'total',
    num(r.segments),
    num(r.bytes),
    total('data'),
    total('envelope'),
    total('delta'),
    total('done'),
    num(r.liveEnvelopes),
    num(r.liveMessages),
    pct(r.garbageRatio),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (c: string[]) => c.map((s, i) => (i === 0 ? s.padEnd(w[i]!) : s.padStart(w[i]!))).join('  ');
  const out = [`queue ${r.dir}: ${r.lanes.length} lanes, ${num(r.segments)} segments, ${num(r.bytes)} bytes`];
  out.push(line(head), ...rows.map(line));
  for (const l of r.lanes) {
    for (const t of l.tornTails)
      out.push(
        `torn tail: ${t.segment} at offset ${t.offset} (${num(t.bytes)} bytes the next start cuts off)`,
      );
    for (const c of l.corruptions) out.push(`CORRUPTION: ${c.segment} at offset ${c.offset}: ${c.reason}`);
    for (const m of l.missingSegments) out.push(`MISSING SEGMENT: ${m}`);
  }
  for (const id of r.missingData)
    out.push(`missing data: message ${id} has a live envelope but no data record (recovery ends it)`);
  for (const p of r.incompleteMoves)
    out.push(`incomplete move: piece ${p} has an older version without its Done (recovery restores it)`);
  if (r.quarantined.length > 0)
    out.push(`quarantine: ${r.quarantined.length} segment(s) set aside earlier: ${r.quarantined.join(', ')}`);
  out.push(
    r.status === 'clean'
      ? 'result: clean'
      : inProgress
        ? 'result: clean (the above are writes in progress of the running daemon, not crash leftovers)'
        : r.status === 'torn'
          ? 'result: crash leftovers only (normal after a crash; the next start repairs them)'
          : 'result: CORRUPT',
  );
  return `${out.join('\n')}\n`;
}

const parse = (args: string[]) =>
  parseArgs({
    args,
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
    strict: true,
  });

export async function run(argv: string[], io: Io): Promise<number> {
  const parsed = parseCommand('log verify', USAGE, io, () => parse(argv));
  if (typeof parsed === 'number') return parsed;
  if (parsed.positionals.length > 1) {
    io.stderr.write(`logmta log verify: one directory at most\n${USAGE}`);
    return 64;
  }
  const dir = parsed.positionals[0] ?? './logmta-data/queue';
  let report: VerifyReport | undefined;
  let running: { pid: number | undefined } | undefined;
  for (let scan = 0; report === undefined; scan++) {
    try {
      running = queueInUse(dir);
      report = await verifyQueue(dir);
    } catch (e) {
      if (e instanceof NotAQueueError) {
        io.stderr.write(`logmta log verify: ${e.message}\n`);
        return 66;
      }
      // A file listed at the start of the scan and gone when read: the daemon freed it.
      if (running === undefined || (e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      if (scan === SCANS - 1) {
        io.stderr.write(
          `logmta log verify: the running logmta changed ${dir} faster than it could be read (${SCANS} scans); try again\n`,
        );
        return 75;
      }
    }
  }
  const inProgress = running !== undefined && report.status === 'torn';
  if (parsed.values.json)
    io.stdout.write(`${JSON.stringify({ ...report, running: running ?? null, inProgress }, null, 2)}\n`);
  else {
    io.stdout.write(formatReport(report, inProgress));
    if (running)
      io.stdout.write(
        `note: a running logmta${running.pid ? ` (pid ${running.pid})` : ''} holds this queue: this is a snapshot of a log being written; stop it for an exact check\n`,
      );
  }
  return inProgress ? 0 : exitCodeOf(report.status);
}

/** Scans of a running daemon's queue before giving up because its files keep vanishing. */
const SCANS = 5;
