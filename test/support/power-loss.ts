// The power-loss loop on LazyFS, shared by the bounded test (test/crash/lazyfs-power.test.ts)
// and the long run (test/long/lazyfs-power.ts). Each cycle mounts LazyFS (lazyfs.ts) over a
// backing directory that plays the disk, checks the queue with `logmta log verify`, starts a real
// `logmta serve` whose queue directory is inside the mount, loads it over SMTP from several
// clients while it relays to a sink (which defers a share of the mail with 451, so the retry and
// data lanes are written too, and may refuse a share for good with 550, so the daemon makes
// bounces, which it relays to the same sink), and then cuts the power in one of three ways:
// - `power`: SIGKILL the daemon, then LazyFS forgets everything not fsynced (clear-cache);
// - `op`: LazyFS crashes itself (losing its cache) at a chosen operation — before or after an
//   fsync, write, create or unlink of a chosen lane's files — and the daemon is SIGKILLed;
// - `torn`: the next write to a lane's current segment is split into parts, only some of which
//   reach the disk (a later part without an earlier one leaves a hole, then stale bytes), then
//   LazyFS crashes.
// An armed fault whose operation does not come within `opTimeoutMs` becomes a plain power cut
// (counted as a fallback); LazyFS dying by itself is one more unplanned power cut (counted).
// After the last cycle, an in-process daemon on the remounted queue drains everything to the
// sink with no more deferrals.
// What is checked (by the caller, from the result): every message that got a 250 was delivered
// whole or named in a bounce the sink received (lost = 0); a message delivered more than once got its copies from different daemon
// runs (a delivery in flight at a power cut, whose outcome never became durable — never twice
// in one run); `log verify` before each start reported the torn tails and corrupt segments
// that recovery then found; the drained queue is empty and clean.
// Randomness comes from `seed` (printed), so a failing schedule can be replayed; the
// interleaving of the clients is not deterministic.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { VerifyReport } from '../../src/queue/index.js';
import {
  codeOf,
  runLogmta,
  SmtpChat,
  type SpawnedDaemon,
  spawnDaemon,
  startTestDaemon,
  type TestDaemon,
  waitFor,
} from './daemon.js';
import { type CrashOp, LazyFsMount, laneSegmentFiles } from './lazyfs.js';
import { SmtpSink } from './sink.js';
import { prng } from './prng.js';
import { dataEnd, isCutShortWrite } from './torn-tail.js';
import { internals } from '../../src/queue/queue.js';

export type FaultKind = 'power' | 'op' | 'torn';

export interface PowerLossOptions {
  /** The LazyFS binary (findLazyFs()). */
  binary: string;
  cycles: number;
  seed: number;
  /** Concurrent SMTP clients (default 8). */
  clients?: number;
  /** Load time before the fault, uniformly in [min, max] ms after the daemon is ready. */
  loadMs?: [number, number];
  /** How long an armed fault may wait for its operation before a plain power cut instead. */
  opTimeoutMs?: number;
  /** Which operation crashes to draw from: the ones a short cycle always reaches, or all 24. */
  crashes?: 'frequent' | 'all';
  /** Share of deliveries the sink defers with 451 during the cycles (default 0.15). */
  deferRate?: number;
  /**
   * Share of deliveries the sink refuses for good with 550 at the end of data during the cycles
   * (default 0; bounces themselves are never refused): the sender must then get a bounce, which
   * the daemon relays to the same sink. A refused message counts as arrived when a bounce names it.
   */
  refuseRate?: number;
  /** A progress line per cycle. */
  log?: (line: string) => void;
  /** Keep the work directory (backing store, logs) for inspection. */
  keep?: boolean;
}

export interface PowerLossResult {
  cycles: number;
  seed: number;
  durationMs: number;
  /** Faults as planned and as they happened. */
  faults: { power: number; op: number; torn: number; fallback: number; unplanned: number };
  /** The operation crashes and torn writes that fired, e.g. "before fsync new". */
  fired: string[];
  attempted: number;
  acknowledged: number;
  /** Acknowledged messages the sink received at least once. */
  delivered: number;
  /** Acknowledged messages that were refused for good and named in a bounce the sink received. */
  bounced: number;
  /** Messages both delivered and bounced (a report kept by a cut whose outcome was not: a retry). */
  bouncedAndDelivered: number;
  /** Acknowledged messages neither delivered nor named in a bounce. */
  lost: number;
  lostIds: string[];
  /** Extra copies the sink received (of any message). */
  duplicated: number;
  /** Messages received twice from one daemon run: never a power-cut duplicate. */
  duplicatedInOneRun: string[];
  /** Messages received whose 250 the client never saw (the cut came first). */
  deliveredUnacknowledged: number;
  truncated: string[];
  /** What recovery found at the starts, summed. */
  tornTails: number;
  corruptions: number;
  /** Starts where `log verify` and recovery disagreed. */
  verifyMismatches: string[];
  /**
   * Starts that cut a torn tail although the cut before them tore no write, and the tail is not
   * a batch cut short (torn-tail.ts): bytes an earlier recovery left after the end it appended
   * at (it wrote in front of stale bytes).
   */
  unexpectedTornTails: string[];
  /** Torn tails after cuts that tore no write that were batches cut short (torn-tail.ts). */
  cutShortTails: number;
  /** Spare segment files the starts found after their cuts (freed segments kept for reuse). */
  sparesAtStarts: number;
  /** Daemon exits that were not our SIGKILL, with whether LazyFS was still alive. */
  daemonExits: string[];
  restartMsAvg: number;
  restartMsMax: number;
  /** The drained queue: messages left and verify's verdict. */
  finalLive: number;
  finalStatus: string;
  dir: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const RETRY_LANE = 'retry-1s';
const LANES = ['new', 'data', RETRY_LANE] as const;
const OPS: CrashOp[] = ['fsync', 'write', 'create', 'unlink'];

/** Every (timing, op, lane) crash, or those that a cycle of a second or so always reaches. */
function crashPoints(
  which: 'frequent' | 'all',
): Array<{ timing: 'before' | 'after'; op: CrashOp; lane: string }> {
  const all = (['before', 'after'] as const).flatMap((timing) =>
    OPS.flatMap((op) => LANES.map((lane) => ({ timing, op, lane }))),
  );
  if (which === 'all') return all;
  return all.filter((c) => c.lane === 'new' || ((c.op === 'fsync' || c.op === 'write') && c.lane === 'data'));
}

interface Tally {
  attempted: number;
  acked: Set<string>;
}

/** One client: connections one after another, a few messages each, until told to stop. */
async function client(
  port: number,
  prefix: string,
  stop: { now: boolean },
  tally: Tally,
  rand: () => number,
): Promise<void> {
  let n = 0;
  while (!stop.now) {
    let chat: SmtpChat | undefined;
    try {
      chat = (await SmtpChat.open(port)).chat;
      if (codeOf((await chat.ask('EHLO power.test\r\n'))[0] ?? '') !== '250') throw new Error('EHLO');
      const perConnection = 1 + Math.floor(rand() * 5);
      for (let k = 0; k < perConnection && !stop.now; k++) {
        const id = `${prefix}-${n++}`;
        const r = await chat.ask(`MAIL FROM:<s@power.test>\r\nRCPT TO:<${id}@far.example>\r\nDATA\r\n`, 3);
        if (r.length < 3 || !r[2]?.startsWith('354')) throw new Error('refused');
        // 0 to ~7 KiB of filler, so that writes span FUSE blocks and segments roll over.
        const filler = `${randomBytes(35).toString('hex')}\r\n`.repeat(Math.floor(rand() * 100));
        tally.attempted++;
        const [end] = await chat.ask(
          `Message-ID: <${id}@power.test>\r\nSubject: ${id}\r\n\r\n${filler}end of ${id}\r\n.\r\n`,
        );
        if (end?.startsWith('250 ')) tally.acked.add(id);
        else throw new Error('not acknowledged');
      }
      await chat.ask('QUIT\r\n');
    } catch {
      // The daemon was cut off, refuses writes, or is gone: try again shortly.
      if (!stop.now) await sleep(20);
    } finally {
      chat?.close();
    }
  }
}

/** A relay for loopback clients that sends everything to `host`, with its queue in `queueDir`. */
export function relayToml(host: string, queueDir: string, retry = '1s', segmentSize = '64KiB'): string {
  return `
[smtp]
relay_networks = ["127.0.0.0/8"]
[[route]]
domain = "*"
host = "${host}"
[queue]
paths = ["${queueDir}"]
retry = ["${retry}"]
segment_size = "${segmentSize}"
`;
}

/** What `log verify` reports that recovery acts on: torn tails and corrupt segments. */
function verifyCounts(r: VerifyReport, queueDir: string): VerifySeen {
  let torn = 0;
  const corrupt = new Set<string>();
  const tails: VerifySeen['tails'] = [];
  for (const l of r.lanes) {
    torn += l.tornTails.length;
    for (const c of l.corruptions) corrupt.add(c.segment);
    for (const t of l.tornTails) tails.push(readTail(join(queueDir, 'lanes', t.segment), t));
  }
  return { torn, corrupt: corrupt.size, tails };
}

interface VerifySeen {
  torn: number;
  corrupt: number;
  /** Each torn tail: whether it is a write cut short (torn-tail.ts), and what it is made of. */
  tails: Array<{ cutShort: boolean; what: string }>;
}

/**
 * A torn tail as bytes: whether it is a write cut short, and for the report of one nobody
 * expected the segment, where it is cut, the file's size, where its data ends, the bytes at the cut.
 */
function readTail(
  path: string,
  t: { segment: string; offset: number; bytes: number },
): { cutShort: boolean; what: string } {
  let b: Buffer;
  try {
    b = readFileSync(path);
  } catch (e) {
    return { cutShort: false, what: `${t.segment} at ${t.offset} (${String(e)})` };
  }
  const at = b.subarray(t.offset, t.offset + 32).toString('hex');
  return {
    cutShort: isCutShortWrite(b, t.offset),
    what: `${t.segment} at ${t.offset} of ${b.length} bytes, data to ${dataEnd(b)}, bytes there ${at}`,
  };
}

function recoveredLine(
  stdout: string,
): { tornTails: number; corruptions: number; spares: number } | undefined {
  const line = stdout.split('\n').find((l) => l.includes('"recovered queue"'));
  return line ? (JSON.parse(line) as { tornTails: number; corruptions: number; spares: number }) : undefined;
}

export async function runPowerLoss(opts: PowerLossOptions): Promise<PowerLossResult> {
  const rand = prng(opts.seed);
  // The schedule is drawn from `rand` alone, so a seed replays it; the clients and the sink,
  // whose calls interleave as the machine pleases, draw from their own generator.
  const loadRand = prng(opts.seed + 1);
  const log = opts.log ?? (() => {});
  const t0 = Date.now();
  // Short paths: a LazyFS command (with a file path in it) must fit in 99 bytes.
  const dir = mkdtempSync('/tmp/lzp');
  const root = join(dir, 'r');
  const mnt = join(dir, 'm');
  const work = join(dir, 'w');
  const queueInMnt = join(mnt, 'q');
  const queueInRoot = join(root, 'q');
  const [minLoad, maxLoad] = opts.loadMs ?? [300, 1200];
  const opTimeout = opts.opTimeoutMs ?? 4_000;
  const points = crashPoints(opts.crashes ?? 'frequent');
  // Operation crashes in a seeded order that covers every point before repeating one.
  const order = points
    .map((p) => ({ p, k: rand() }))
    .sort((a, b) => a.k - b.k)
    .map((x) => x.p);
  const deferRate = opts.deferRate ?? 0.15;
  const refuseRate = opts.refuseRate ?? 0;
  let deferring = true;
  const sink = await SmtpSink.start({
    pipelining: true,
    dataReply: (tx) => {
      if (!deferring) return undefined;
      const r = loadRand();
      if (r < deferRate) return '451 4.3.0 try again later';
      if (tx.sender !== '' && r < deferRate + refuseRate) return '550 5.1.1 no such user here';
      return undefined;
    },
  });
  const tally: Tally = { attempted: 0, acked: new Set() };
  const res: PowerLossResult = {
    cycles: opts.cycles,
    seed: opts.seed,
    durationMs: 0,
    faults: { power: 0, op: 0, torn: 0, fallback: 0, unplanned: 0 },
    fired: [],
    attempted: 0,
    acknowledged: 0,
    delivered: 0,
    bounced: 0,
    bouncedAndDelivered: 0,
    lost: 0,
    lostIds: [],
    duplicated: 0,
    duplicatedInOneRun: [],
    deliveredUnacknowledged: 0,
    truncated: [],
    tornTails: 0,
    corruptions: 0,
    verifyMismatches: [],
    unexpectedTornTails: [],
    cutShortTails: 0,
    sparesAtStarts: 0,
    daemonExits: [],
    restartMsAvg: 0,
    restartMsMax: 0,
    finalLive: -1,
    finalStatus: '',
    dir,
  };
  /** Sink transaction index where each daemon run's deliveries end. */
  const runEnds: number[] = [];
  const restarts: number[] = [];
  let mount: LazyFsMount | undefined;
  let daemon: SpawnedDaemon | undefined;
  let final: TestDaemon | undefined;

  /** Before a start: verify must report what the recovery about to run will find. */
  const verifyBefore = async (): Promise<VerifySeen | undefined> => {
    const v = await runLogmta(['log', 'verify', '--json', queueInMnt], { timeoutMs: 60_000 });
    if (v.code === 66) return undefined; // no queue yet
    return verifyCounts(JSON.parse(v.stdout) as VerifyReport, queueInMnt);
  };
  /** Whether the cut that ended the last run armed a torn write. */
  let lastCutTore = false;
  const compare = (
    start: string,
    v: VerifySeen | undefined,
    r: { tornTails: number; corruptions: number },
  ): void => {
    res.tornTails += r.tornTails;
    res.corruptions += r.corruptions;
    if (v && (v.torn !== r.tornTails || v.corrupt !== r.corruptions))
      res.verifyMismatches.push(
        `${start}: verify saw ${v.torn} torn tails and ${v.corrupt} corrupt segments, recovery ${r.tornTails} and ${r.corruptions}`,
      );
    if (r.tornTails === 0 || lastCutTore) return;
    // After a cut that tore no write, a torn tail may still be a batch cut short while another
    // batch in flight to the same segment synced (torn-tail.ts). Anything else is bytes an
    // earlier recovery left after the end it appended at.
    const stale = v ? v.tails.filter((t) => !t.cutShort) : [];
    res.cutShortTails += v ? v.tails.length - stale.length : 0;
    if (!v || stale.length > 0)
      res.unexpectedTornTails.push(
        `${start}: ${r.tornTails} torn tails after a cut that tore no write, not writes cut short${v ? ` (${stale.map((t) => t.what).join('; ')})` : ''}`,
      );
  };

  try {
    for (let cycle = 0; cycle < opts.cycles; cycle++) {
      mount = await LazyFsMount.mount({ binary: opts.binary, root, mnt, work });
      const m = mount;
      const v = await verifyBefore();
      const started = Date.now();
      const d = await spawnDaemon({
        dir,
        toml: relayToml(`127.0.0.1:${sink.port}`, queueInMnt),
        startTimeoutMs: 60_000,
      });
      daemon = d;
      restarts.push(Date.now() - started);
      // The recovery report is on stdout, the address on stderr: the two pipes race.
      await waitFor(() => recoveredLine(d.stdout()) !== undefined, 'the recovery report', 10_000);
      const rec = recoveredLine(d.stdout())!;
      compare(`start ${cycle}`, v, rec);
      res.sparesAtStarts += rec.spares;
      let ours = false;
      const cut = (): void => {
        ours = true;
        d.kill('SIGKILL');
      };
      // A power cut takes everything at once: when LazyFS dies, so does the daemon.
      void m.exited.then(cut);
      void d.exited.then((x) => {
        if (!ours || x.signal !== 'SIGKILL')
          res.daemonExits.push(
            `cycle ${cycle}: daemon exited (code ${x.code}, signal ${x.signal}) with LazyFS ${m.alive ? 'alive' : 'gone'}`,
          );
      });
      const killDaemon = async (): Promise<void> => {
        cut();
        await d.exited;
      };
      const stop = { now: false };
      const clients = Array.from({ length: opts.clients ?? 8 }, (_, w) =>
        client(d.port, `c${cycle}w${w}`, stop, tally, loadRand),
      );
      await Promise.race([sleep(minLoad + rand() * (maxLoad - minLoad)), m.exited]);

      const kind: FaultKind = (['power', 'op', 'torn'] as const)[cycle % 3]!;
      let what = kind;
      let tore = false;
      if (!m.alive) {
        res.faults.unplanned++;
        what = 'power' as FaultKind;
        log(`cycle ${cycle}: LazyFS died by itself (an unplanned power cut)`);
      } else if (kind === 'power') {
        res.faults.power++;
      } else {
        let armed = false;
        let label = '';
        if (kind === 'op') {
          const p = order[res.faults.op % order.length]!;
          label = `${p.timing} ${p.op} ${p.lane}`;
          armed = await m
            .crashAt(p.timing, p.op, `lanes/${p.lane}/`)
            .then(() => true)
            .catch(() => false);
        } else {
          const lane = rand() < 0.7 ? 'new' : LANES[1 + Math.floor(rand() * 2)]!;
          // The lane's last two segments and the next few: at 64 KiB a busy lane rolls over
          // every few dozen milliseconds, faster than the faults can be armed one by one.
          const last = (await laneSegmentFiles(queueInRoot, lane)).slice(-2);
          const files = [...last];
          const top = last.at(-1);
          if (top) {
            const seq = Number(top.slice(-14, -4));
            for (let k = 1; k <= 5; k++)
              files.push(`${top.slice(0, -14)}${String(seq + k).padStart(10, '0')}.seg`);
          }
          const parts = 2 + Math.floor(rand() * 3);
          // A non-empty proper subset of the parts. Every other torn write leaves out the first
          // part: a hole, then stale bytes.
          const from = Math.floor(cycle / 3) % 2 === 0 ? 2 : 1;
          let persist: number[] = [];
          while (persist.length === 0 || persist.length === parts)
            persist = Array.from({ length: parts }, (_, i) => i + 1).filter((i) => i >= from && rand() < 0.5);
          label = `torn write ${lane} parts=${parts} persist=${persist.join(',')}`;
          for (const f of files)
            armed =
              (await m
                .tornWrite(f, parts, persist)
                .then(() => true)
                .catch(() => false)) || armed;
        }
        tore = kind === 'torn' && armed;
        if (armed) await Promise.race([m.exited, sleep(opTimeout)]);
        if (!m.alive) {
          res.faults[kind]++;
          res.fired.push(label);
          what = kind;
        } else {
          res.faults.fallback++;
          what = 'power' as FaultKind;
          label += ' (did not come: power cut instead)';
        }
        log(`cycle ${cycle}: ${label}`);
      }
      stop.now = true;
      await killDaemon();
      if (what === 'power' && m.alive) await m.clearCache().catch(() => {}); // if LazyFS died meanwhile, its cache went with it
      await Promise.all(clients);
      // The daemon's connections to the sink are closed by the kernel; wait for the sink to see
      // it, so that every delivery of this run is counted in this run.
      await waitFor(
        () => sink.openConnections === 0,
        'the sink connections of the killed daemon to close',
        10_000,
      );
      runEnds.push(sink.transactions.length);
      await m.unmount();
      lastCutTore = tore;
      log(
        `cycle ${cycle}: ${kind}${what !== kind ? ` -> ${what}` : ''}, ${tally.acked.size} acknowledged, ${sink.transactions.length} delivered so far`,
      );
    }

    // Drain: the last start, on the remounted queue, with a sink that accepts everything.
    deferring = false;
    mount = await LazyFsMount.mount({ binary: opts.binary, root, mnt, work });
    const v = await verifyBefore();
    final = await startTestDaemon({
      dir,
      keepDir: true,
      toml: relayToml(`127.0.0.1:${sink.port}`, queueInMnt),
    });
    const rec = final.daemon.queues.recovery[0];
    if (rec) {
      compare('final start', v, { tornTails: rec.tornTails.length, corruptions: rec.corruptions.length });
      res.sparesAtStarts += rec.spares;
    }
    const f = final;
    const queued = () => f.daemon.queues.list.reduce((a, q) => a + internals(q).core.msgs.count, 0);
    await waitFor(
      () => {
        f.daemon.queues.flushRetries();
        return queued() === 0;
      },
      'the queue to drain',
      120_000,
    ).catch((e: Error) => {
      throw new Error(`${e.message}: ${queued()} messages still queued`);
    });
    await final.stop();
    final = undefined;
    const after = await runLogmta(['log', 'verify', '--json', queueInMnt], { timeoutMs: 60_000 });
    const report = JSON.parse(after.stdout) as VerifyReport;
    res.finalLive = report.liveMessages;
    res.finalStatus = report.status;
    await mount.unmount();
    mount = undefined;
  } finally {
    daemon?.kill('SIGKILL');
    await daemon?.exited;
    await final?.stop().catch(() => {});
    await mount?.unmount().catch(() => {});
    await sink.close();
  }

  // Count what the sink received, by daemon run.
  const copies = new Map<string, number[]>();
  const bounced = new Set<string>();
  sink.transactions.forEach((tx, i) => {
    const text = tx.data.toString('latin1');
    if (tx.sender === '') {
      // A bounce: it quotes the message it reports, so it is never counted as a copy of it.
      for (const m of text.matchAll(/^Final-Recipient: rfc822;\s*([^@\s]+)@far\.example\r$/gim))
        bounced.add(m[1]!);
      return;
    }
    const id = /^Message-ID: <(.+)@power\.test>\r$/m.exec(text)?.[1] ?? `?${i}`;
    if (!text.endsWith(`end of ${id}\r\n`)) res.truncated.push(id);
    let run = runEnds.findIndex((end) => i < end);
    if (run < 0) run = runEnds.length; // the drain
    const list = copies.get(id);
    if (list) list.push(run);
    else copies.set(id, [run]);
  });
  res.attempted = tally.attempted;
  res.acknowledged = tally.acked.size;
  res.lostIds = [...tally.acked].filter((id) => !copies.has(id) && !bounced.has(id));
  res.lost = res.lostIds.length;
  res.delivered = [...tally.acked].filter((id) => copies.has(id)).length;
  res.bounced = [...tally.acked].filter((id) => bounced.has(id)).length;
  res.bouncedAndDelivered = [...tally.acked].filter((id) => bounced.has(id) && copies.has(id)).length;
  for (const [id, runs] of copies) {
    res.duplicated += runs.length - 1;
    if (new Set(runs).size < runs.length) res.duplicatedInOneRun.push(`${id} (runs ${runs.join(', ')})`);
    if (!tally.acked.has(id)) res.deliveredUnacknowledged++;
  }
  res.restartMsAvg = Math.round(restarts.reduce((a, b) => a + b, 0) / Math.max(1, restarts.length));
  res.restartMsMax = Math.max(0, ...restarts);
  res.durationMs = Date.now() - t0;
  if (!opts.keep && res.lost === 0) rmSync(dir, { recursive: true, force: true });
  return res;
}
