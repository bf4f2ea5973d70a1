// The queue benchmark: in one run, side by side, the disk's single-stream append+fdatasync rate
// (the physical reference), durable enqueue rates with 1/16/64 producers (and 64 producers in
// the steady state, each message delivered as it is accepted), recovery time and
// memory per live message for 100k and 1M queued messages, and bytes written per message.
// The reference and the enqueue runs alternate over ROUNDS rounds (default 3): each figure is the
// median of its rounds (every round printed), and the ×-fsync ratio is the median of each
// round's ratio to the reference measured just before it.
//
//   node dist/bench/queue-bench.js [--quick] [--dir PARENT] [--secs N] [--rounds N]
//
// Writes nothing but temporary directories under PARENT (default the OS temp dir), each removed
// when its measurement ends. Recovery is measured in a fresh child process (--expose-gc), the
// fill of its queue in another one, so neither inherits this process's heap or file caches of
// its own making. A measurement that throws (e.g. the queue poisons itself) becomes a FAILED row
// and the run goes on. Exit code: 0 when every measurement ran (targets missed are reported in
// the table, not as a failure), 1 when one failed.
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  type BytesResult,
  bytesPerMessage,
  type EnqueueResult,
  enqueueRun,
  fillQueue,
  fsyncRate,
  type RecoverMeasure,
  recoverMeasure,
  removeDir,
  tempDir,
} from './queue-measures.js';

const SELF = fileURLToPath(import.meta.url);
const FILL_SIZE = 256;

const fmt = (n: number, d = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const mib = (n: number) => `${fmt(n / 1048576, 1)} MiB`;

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padStart(w[i]!)).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

function child(args: string[]): string {
  return execFileSync(process.execPath, ['--expose-gc', SELF, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
}

async function recoveryCase(
  parent: string,
  n: number,
  segArgs: string[],
): Promise<{ n: number; fill: { ms: number; bytes: number }; r: RecoverMeasure }> {
  const dir = tempDir(parent, `recover${n}`);
  try {
    const fill = JSON.parse(child(['--fill-child', dir, String(n), ...segArgs])) as {
      ms: number;
      bytes: number;
    };
    const r = JSON.parse(child(['--recover-child', dir])) as RecoverMeasure;
    return { n, fill, r };
  } finally {
    removeDir(dir);
  }
}

interface Failed {
  error: string;
}

let failures = 0;

/** Runs one measurement; a failure becomes a row that says so instead of ending the run. */
async function attempt<T, K extends object>(key: K, fn: () => Promise<T>): Promise<T | (Failed & K)> {
  try {
    return await fn();
  } catch (e) {
    failures++;
    const cause = e instanceof Error && e.cause instanceof Error ? ` (${e.cause.message})` : '';
    return { ...key, error: `${e instanceof Error ? e.message : String(e)}${cause}` };
  }
}

function failedCells(_e: Failed, n: number): string[] {
  return ['FAILED', ...Array.from({ length: n - 1 }, () => '-')];
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      dir: { type: 'string', default: os.tmpdir() },
      secs: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '3' },
      'segment-size': { type: 'string' },
      'fill-child': { type: 'string' },
      'recover-child': { type: 'string' },
    },
    allowPositionals: true,
  });
  const segmentSize = values['segment-size'] === undefined ? undefined : Number(values['segment-size']);
  if (segmentSize !== undefined && !(segmentSize >= 4096)) throw new RangeError('--segment-size wants bytes');
  const segArgs = segmentSize === undefined ? [] : ['--segment-size', String(segmentSize)];
  if (values['fill-child'] !== undefined) {
    const n = Number(positionals[0]);
    process.stdout.write(JSON.stringify(await fillQueue(values['fill-child'], n, FILL_SIZE, segmentSize)));
    return 0;
  }
  if (values['recover-child'] !== undefined) {
    process.stdout.write(JSON.stringify(await recoverMeasure(values['recover-child'])));
    return 0;
  }
  const parent = values.dir;
  const secs = Number(values.secs);
  const quick = values.quick;
  const out = (s = '') => process.stdout.write(`${s}\n`);
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  out(`# logmta queue benchmark${quick ? ' (--quick)' : ''}`);
  out(`node ${process.version}, ${os.cpus().length} × ${cpu}, ${mib(os.totalmem())} RAM, dir ${parent}`);
  out(`segment size ${segmentSize === undefined ? 'queue default (64 MiB)' : mib(segmentSize)}`);
  out(
    `started ${new Date().toISOString()}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  out();

  const rounds = Number(values.rounds);
  if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError('--rounds wants a positive integer');
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  const configs: Array<{ size: number; producers: number; deliver?: boolean }> = [];
  for (const size of [4096, 65536]) for (const producers of [1, 16, 64]) configs.push({ size, producers });
  // Steady state: the same load, each message delivered as soon as it is accepted, so freed
  // segments come back as spares (log/spares.ts) the way they do in a daemon whose mail goes out.
  configs.push({ size: 4096, producers: 64, deliver: true });

  // 1 and 2. The physical reference, then durable enqueue, alternating over the rounds.
  const refs: Array<ReturnType<typeof fsyncRate>> = [];
  const enqs: Array<Array<EnqueueResult | (Failed & { size: number; producers: number })>> = configs.map(
    () => [],
  );
  for (let r = 0; r < rounds; r++) {
    refs.push(fsyncRate(parent, secs));
    for (const [i, c] of configs.entries())
      enqs[i]!.push(
        await attempt(c, () => enqueueRun(parent, c.size, c.producers, secs, segmentSize, c.deliver)),
      );
  }
  const f = refs.find((x) => x.perSec === median(refs.map((y) => y.perSec)))!;
  out(`## Disk reference: append 64 B + fdatasync, one stream (median of ${rounds} rounds)`);
  out(
    table(
      ['ops', 'ops/s', 'avg ms', 'ops/s per round'],
      [[fmt(f.ops), fmt(f.perSec), fmt(f.avgMs, 3), refs.map((x) => fmt(x.perSec)).join(' / ')]],
    ),
  );
  out();
  /** Each config's median round, and its ratio to the reference of the same round (median). */
  const enq = enqs.map((runs, i) => {
    const ok = runs
      .map((e, r) => ({ e, r }))
      .filter((x): x is { e: EnqueueResult; r: number } => !('error' in x.e));
    if (ok.length === 0) return { ...configs[i]!, error: (runs[0] as Failed).error, rounds: runs };
    const mid = median(ok.map((x) => x.e.msgsPerSec));
    const pick = ok.find((x) => x.e.msgsPerSec === mid)!.e;
    const ratios = ok.map((x) => x.e.msgsPerSec / refs[x.r]!.perSec);
    return { ...pick, deliver: configs[i]!.deliver, ratio: median(ratios), ratios, rounds: runs };
  });
  out(`## Durable enqueue: Queue.accept(), fdatasync on, one recipient (median of ${rounds} rounds)`);
  out(
    table(
      [
        'size',
        'producers',
        'mode',
        'msgs',
        'msgs/s',
        'MB/s',
        'msgs/batch',
        'fdatasyncs',
        'spares reused',
        'ms/batch',
        'CPU µs/msg',
        '× fsync rate',
        'msgs/s per round',
        '× per round',
      ],
      enq.map((e) => [
        e.size === 4096 ? '4 KiB' : '64 KiB',
        String(e.producers),
        e.deliver ? 'accept + deliver' : 'accept',
        ...('error' in e
          ? failedCells(e, 11)
          : [
              fmt(e.msgs),
              fmt(e.msgsPerSec),
              fmt(e.mbPerSec, 1),
              fmt(e.msgsPerBatch, 1),
              fmt(e.datasyncs),
              fmt(e.sparesTaken),
              fmt(e.avgSyncMs, 2),
              fmt(e.cpuUsPerMsg, 1),
              fmt(e.ratio, 2),
              e.rounds.map((x) => ('error' in x ? 'FAILED' : fmt(x.msgsPerSec))).join(' / '),
              e.ratios.map((x) => fmt(x, 2)).join(' / '),
            ]),
      ]),
    ),
  );
  // The target, in both states: a fresh queue (every segment a new file) and the steady state.
  for (const steady of [false, true]) {
    const what = `target 64 producers × 4 KiB${steady ? ', delivered as accepted (steady state),' : ', accept only (fresh queue),'} ≥ 10× fsync rate`;
    const target = enq.find((e) => e.size === 4096 && e.producers === 64 && !!e.deliver === steady)!;
    if ('error' in target) out(`${what}: NOT MEASURED (the run failed)`);
    else out(`${what}: ${fmt(target.ratio, 2)}× — ${target.ratio >= 10 ? 'MET' : 'MISSED'}`);
  }
  for (const runs of enqs)
    for (const e of runs) if ('error' in e) out(`FAILED ${e.size} B × ${e.producers}: ${e.error}`);
  out();

  // 3. Recovery time and memory.
  const rec: Array<Awaited<ReturnType<typeof recoveryCase>>> = [];
  for (const n of quick ? [100_000] : [100_000, 1_000_000]) {
    const r = await attempt({ n }, () => recoveryCase(parent, n, segArgs));
    if ('error' in r) out(`FAILED recovery N=${fmt(n)}: ${r.error}`);
    else rec.push(r);
  }
  out(`## Recovery: Queue.open() of N live ${FILL_SIZE}-byte messages, fresh process, warm page cache`);
  out(
    table(
      [
        'N',
        'log size',
        'segments',
        'fill s',
        'open s',
        'recovered',
        'heap+buffers B/msg',
        'heap B/msg',
        'columns B/msg',
        'RSS B/msg',
        'RSS after',
      ],
      rec.map(({ n, fill, r }) => {
        const retained = r.heapAfter - r.heapBefore + (r.extAfter - r.extBefore);
        return [
          fmt(n),
          mib(r.bytes),
          String(r.segments),
          fmt(fill.ms / 1000, 1),
          fmt(r.openMs / 1000, 2),
          fmt(r.liveMessages),
          fmt(retained / n, 0),
          fmt((r.heapAfter - r.heapBefore) / n, 0),
          fmt(r.indexBytes / n, 0),
          fmt((r.rssAfter - r.rssBefore) / n, 0),
          mib(r.rssAfter),
        ];
      }),
    ),
  );
  for (const { n, r } of rec) {
    const retained = (r.heapAfter - r.heapBefore + (r.extAfter - r.extBefore)) / n;
    if (n === 1_000_000) {
      out(
        `target 1M recovery < 10 s: ${fmt(r.openMs / 1000, 2)} s — ${r.openMs < 10_000 ? 'MET' : 'MISSED'}`,
      );
    }
    out(
      `target < 250 B per message (N=${fmt(n)}, heap+buffers): ${fmt(retained)} B — ${retained < 250 ? 'MET' : 'MISSED'}`,
    );
    if (r.liveMessages !== n) out(`WARNING: recovered ${r.liveMessages} live messages, expected ${n}`);
  }
  out();

  // 4. Bytes written per message.
  const bytes: BytesResult[] = [];
  for (const deferrals of [0, 3]) {
    const b = await attempt({ deferrals }, () => bytesPerMessage(parent, 200, 4096, deferrals, segmentSize));
    if ('error' in b) out(`FAILED bytes per message, ${deferrals} deferrals: ${b.error}`);
    else bytes.push(b);
  }
  out('## Bytes appended per 4 KiB message, one recipient (frame headers included; segment headers not)');
  out(
    table(
      ['case', 'attempts/msg', 'data', 'envelope', 'delta', 'done', 'total', 'overhead', 'writer.stats/msg'],
      bytes.map((b) => [
        b.deferrals === 0 ? 'delivered 1st attempt' : `deferred ${b.deferrals}×, then delivered`,
        fmt(b.attempts / b.msgs, 1),
        fmt(b.perType.data),
        fmt(b.perType.envelope),
        fmt(b.perType.delta),
        fmt(b.perType.done),
        fmt(b.total),
        `${fmt(b.total - b.size)} (${fmt(((b.total - b.size) / b.size) * 100, 1)}%)`,
        fmt(b.statsPerMsg),
      ]),
    ),
  );
  out(`overhead = total − message size (${fmt(4096)} B): data copies, envelopes, deltas, dones`);
  out();
  out(
    `finished ${new Date().toISOString()}, load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  return failures > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`queue-bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
