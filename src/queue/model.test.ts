// Property test: random queue histories (split enqueues, messages streamed in chunks through a
// spool — some abandoned half-way —, delivered/failed/deferred outcomes, partial record(), ETRN
// holds, operator hold/release/delete, held-lane flushes, data compaction, time) are run against a
// small model, with power cuts at random file operations (also during recovery and mid-stream).
// After every recovery: each acknowledged recipient is pending unless its outcome or deletion
// was acknowledged; nothing acknowledged as finished comes back; reference counts equal live
// pieces. Every delivery reads the message data and finds exactly the bytes accepted. At the
// end everything is delivered and no garbage segment is left (abandoned chunks included).
// How much queue work happens between two steps is part of the history (a seeded schedule of
// event-loop turns, not sleeps), so a counterexample replays the same on a loaded CI machine.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { scanSegment } from './log/reader.js';
import { parseSegmentName, segmentName } from './log/segment.js';
import type { DataSpool } from './data/spool.js';
import { Queue, internals } from './queue.js';
import { F_INFLIGHT } from './state/tables.js';
import type { Deliverer, Destination, RcptOutcome } from './types.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { CrashFs, quiet } from '../../test/support/queue.js';
import { prng } from '../../test/support/prng.js';
import { ticks } from '../../test/support/wait.js';
import { FakeClock } from '../../test/support/clock.js';

type Fate = 'delivered' | 'failed' | 'deferred' | 'hold' | 'record';
type Op =
  | { t: 'enqueue'; rcpts: Array<{ dom: string; fates: Fate[] }> }
  | {
      t: 'stream';
      rcpts: Array<{ dom: string; fates: Fate[] }>;
      size: number;
      writes: number;
      abort: boolean;
    }
  | { t: 'compact' }
  | { t: 'hold' | 'release' | 'delete'; pick: number }
  | { t: 'flush'; dom: string }
  | { t: 'advance'; ms: number }
  | { t: 'settle' };

const HELD = ['h1.test', 'h2.test'];
const fateArb = fc.constantFrom<Fate>('delivered', 'failed', 'deferred', 'hold', 'record');
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('enqueue' as const),
      rcpts: fc.array(
        fc.record({
          dom: fc.constantFrom('n.test', 'n.test', ...HELD),
          fates: fc.array(fateArb, { maxLength: 3 }),
        }),
        { minLength: 1, maxLength: 3 },
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constantFrom('hold' as const, 'release' as const, 'delete' as const),
      pick: fc.nat(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('stream' as const),
      rcpts: fc.array(
        fc.record({
          dom: fc.constantFrom('n.test', 'n.test', ...HELD),
          fates: fc.array(fateArb, { maxLength: 3 }),
        }),
        { minLength: 1, maxLength: 2 },
      ),
      // Chunks are CHUNK bytes: from a message that is never chunked to one spanning segments.
      size: fc.integer({ min: 40, max: 6000 }),
      writes: fc.integer({ min: 1, max: 6 }),
      abort: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('compact' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('flush' as const), dom: fc.constantFrom(...HELD) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      t: fc.constant('advance' as const),
      ms: fc.integer({ min: 1, max: 3 * 3_600_000 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('settle' as const) }) },
);

type RState = 'pending' | 'maybe' | 'done';

/** What the runs exercised, so the property cannot pass vacuously. */
const seen = {
  streamed: 0,
  aborted: 0,
  compacted: 0,
  dataChecked: 0,
  duplicated: 0,
  crashes: 0,
  recoveryCrashes: 0,
  repaired: 0,
  acked: 0,
  ambiguous: 0,
  finals: 0,
  deleted: 0,
};
interface MMsg {
  acked: boolean;
  rcpts: Map<string, RState>;
  /**
   * Recipients found pending in two pieces at once after a recovery (a split move whose new
   * piece became durable but whose parent's new version did not: docs/queue-states.md S8).
   * Finishing one copy leaves the other: such a recipient may come back once (a duplicate).
   */
  dup: Set<string>;
}

async function pendingAddresses(q: Queue, msgId: number): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const m = internals(q).core.msgs.byId.get(msgId);
  if (m === undefined) return out;
  for (const p of internals(q).core.piecesOf(m)) {
    if (!internals(q).core.isLive(p)) continue;
    const env = await q.readEnvelope(p);
    for (const i of q.pendingOf(p, env)) {
      const a = env.info.recipients[i]!.address;
      out.set(a, (out.get(a) ?? 0) + 1);
    }
  }
  return out;
}

/**
 * The in-memory/durable invariants of lanes (docs/queue-states.md, "Held lanes"), checked after
 * every step without a restart: a live piece is in flight or in its lane's FIFO; a live piece of
 * a held or hold lane is in its lane's FIFO even while in flight, and has an expiry entry.
 */
function checkLanes(q: Queue): void {
  const core = internals(q).core;
  const P = core.pieces;
  const inFifo = new Set<string>();
  for (const lane of core.lanes)
    for (let i = 0; i < lane.fifo.length; i++)
      inFifo.add(`${lane.idx}/${lane.fifo.slotAt(i)}/${lane.fifo.genAt(i)}`);
  const inExpiry = new Set<string>();
  q.expiry.forEach((_, slot, gen) => {
    inExpiry.add(`${slot}/${gen}`);
  });
  for (const m of core.msgs.byId.values()) {
    for (const p of core.piecesOf(m)) {
      if (!core.isLive(p)) continue;
      const lane = core.laneOf(p);
      const key = `${lane.idx}/${p}/${P.gen[p]}`;
      const flying = (P.flags[p]! & F_INFLIGHT) !== 0;
      if (lane.held) {
        assert.ok(inFifo.has(key), `${core.msgs.id[m]}: held piece missing from ${lane.name}'s order`);
        assert.ok(inExpiry.has(`${p}/${P.gen[p]}`), `${core.msgs.id[m]}: held piece without an expiry entry`);
      } else if (!flying) assert.ok(inFifo.has(key), `${core.msgs.id[m]}: piece missing from ${lane.name}`);
    }
  }
}

function checkRefs(q: Queue): void {
  const core = internals(q).core;
  for (const m of core.msgs.byId.values()) {
    const live = core.piecesOf(m).filter((p) => core.isLive(p)).length;
    assert.equal(core.msgs.refs[m], live, `refs of ${core.msgs.id[m]}`);
    assert.ok(live > 0, 'no message row without a live piece');
  }
}

/** Chunk size of the queues under test: small, so chunked data spans 4 KiB segments. */
const CHUNK = 700;

/** The bytes of message `id`: deterministic, `size` long. */
function contentOf(id: number, size: number): Buffer {
  const head = Buffer.from(`Subject: ${id}\r\n\r\n`);
  const b = Buffer.alloc(Math.max(size, head.length + 2));
  head.copy(b);
  for (let i = head.length; i < b.length - 2; i++) b[i] = 97 + ((id + i) % 26);
  b.write('\r\n', b.length - 2);
  return b;
}

/**
 * The schedule of one history: how many turns of the event loop pass at each pause, drawn from
 * a generator seeded by the history, so that a history replays exactly however loaded the
 * machine is (real sleeps let a varying amount of queue work happen between two steps).
 * Mostly none or a few, sometimes many: deliveries and batches stop at every point.
 */
function schedule(seed: number): (scale?: number) => Promise<void> {
  const next = prng(seed);
  return (scale = 1) => {
    const r = next();
    const n =
      r < 0.3
        ? 0
        : r < 0.6
          ? 1 + Math.floor(next() * 3)
          : r < 0.9
            ? Math.floor(next() * 20)
            : Math.floor(next() * 300);
    return ticks(Math.ceil(n * scale));
  };
}

/** Turns of the event loop a step may take to settle before the queue counts as hung. */
const HUNG_TURNS = 200_000;

async function run(ops: Op[], crashPlan: readonly number[], sched = 1): Promise<void> {
  const crashes = [...crashPlan];
  const pause = schedule(sched);
  /** The data each message was accepted with, and deliveries that read something else. */
  const contents = new Map<number, Buffer>();
  const badData: string[] = [];
  const mem = new MemQueueFs();
  const clock = new FakeClock();
  const model = new Map<number, MMsg>();
  const fates = new Map<string, Fate[]>();
  let nextId = 1_000_000;
  const mark = (id: number, addr: string, s: RState) => {
    const m = model.get(id);
    if (!m) return;
    const cur = m.rcpts.get(addr);
    if (s === 'maybe' && cur !== 'pending') return;
    m.rcpts.set(addr, s);
  };
  const deliver: Deliverer = async (job) => {
    const want = contents.get(job.msgId);
    if (want) {
      const parts: Buffer[] = [];
      for await (const b of job.stream()) parts.push(b);
      const got = Buffer.concat(parts);
      if (!got.equals(want)) badData.push(`${job.msgId}: ${got.length} bytes, wanted ${want.length}`);
      seen.dataChecked++;
    }
    const outs: RcptOutcome[] = [];
    const early: RcptOutcome[] = [];
    for (const i of job.pending) {
      const addr = job.envelope.info.recipients[i]!.address;
      const f = fates.get(`${job.msgId}/${addr}`)?.shift() ?? 'delivered';
      if (f === 'record') early.push({ rcpt: i, status: 'delivered' });
      if (f === 'hold') outs.push({ rcpt: i, status: 'deferred', hold: 'h1.test' });
      else outs.push({ rcpt: i, status: f === 'record' ? 'delivered' : f });
    }
    const addr = (o: RcptOutcome) => job.envelope.info.recipients[o.rcpt]!.address;
    if (early.length > 0) {
      for (const o of early) mark(job.msgId, addr(o), 'maybe');
      await job.record(early);
      for (const o of early) mark(job.msgId, addr(o), 'done');
    }
    const finals = outs.filter((o) => o.status !== 'deferred');
    for (const o of finals) mark(job.msgId, addr(o), 'maybe');
    await job.finish(outs);
    for (const o of finals) mark(job.msgId, addr(o), 'done');
    seen.finals += finals.length;
  };
  const opts = { dir: '/q', clock, segmentSize: 4096, maxAge: 1e12, delayWarning: 1e12, chunkSize: CHUNK };
  let proc = 0;
  let fs = new CrashFs(mem);
  let q: Queue | undefined;

  /** Opens (recovering) after a crash, itself possibly cut by a crash; checks the model. */
  const reopen = async () => {
    for (;;) {
      fs = new CrashFs(mem);
      const c = crashes[proc++];
      if (c !== undefined) fs.crashAfter(c);
      let opened: Queue | undefined;
      let failed: unknown;
      void Queue.open({ ...opts, fs }).then(
        (x) => (opened = x),
        (e) => (failed = e),
      );
      for (let i = 0; i < HUNG_TURNS && !opened && !fs.dead && !failed; i++) await ticks(1);
      if (failed) throw failed;
      assert.ok(opened || fs.dead, 'recovery never ended');
      if (opened && !fs.dead) {
        q = opened;
        seen.repaired += opened.recovery!.repaired;
        break;
      }
      seen.recoveryCrashes++;
      fs.crash();
    }
    // The model check, before anything runs.
    const known = new Set<number>();
    for (const [id, m] of model) {
      const present = await pendingAddresses(q, id);
      known.add(id);
      for (const a of present.keys()) assert.ok(m.rcpts.has(a), `unknown recipient ${a} of ${id}`);
      for (const [a, s] of m.rcpts) {
        if (s === 'done' && !m.dup.has(a)) assert.ok(!present.has(a), `${id}: finished ${a} came back`);
        if (!present.has(a)) m.dup.delete(a);
        else if (present.get(a)! > 1) {
          // Two live pieces for one recipient: the duplicate a cut-short split move used to leave
          // (docs/queue-states.md S8) before split-off pieces were written in their own phase.
          m.dup.add(a);
          seen.duplicated++;
          assert.fail(`${id}: ${a} is pending in ${present.get(a)} pieces`);
        }
        if (s === 'pending' && m.acked) assert.ok(present.has(a), `${id}: acknowledged ${a} lost`);
        if (s === 'maybe') seen.ambiguous++;
        m.rcpts.set(a, present.has(a) ? 'pending' : 'done');
      }
      if (!m.acked && present.size > 0) m.acked = true;
      if (!m.acked) model.delete(id);
    }
    for (const id of internals(q).core.msgs.byId.keys())
      assert.ok(known.has(id), `message ${id} came from nowhere`);
    checkRefs(q);
    assert.deepEqual(badData, [], 'delivered data differs from what was accepted');
    q.setDeliverer(deliver);
    q.start();
  };

  /** Puts message `id` in the model and accepts it (acknowledged when accept resolves). */
  const submit = (
    cur: Queue,
    id: number,
    spec: Array<{ dom: string; fates: Fate[] }>,
    content: Buffer,
    data: Buffer[] | DataSpool,
  ): void => {
    const rcpts = spec.map((r, i) => ({ address: `r${i}@${r.dom}` }));
    const m: MMsg = {
      acked: false,
      rcpts: new Map(rcpts.map((r) => [r.address, 'pending' as RState])),
      dup: new Set(),
    };
    model.set(id, m);
    contents.set(id, content);
    for (const [i, r] of spec.entries()) fates.set(`${id}/r${i}@${r.dom}`, [...r.fates]);
    const destinations: Destination[] = spec.map((r) =>
      r.dom === 'n.test' ? { kind: 'new' } : { kind: 'held', domain: r.dom },
    );
    cur.accept({ data, sender: 's@x.test', recipients: rcpts, destinations, msgId: id }).then(
      () => {
        m.acked = true;
        seen.acked++;
      },
      () => {},
    );
  };

  await reopen();
  for (const op of ops) {
    if (fs.dead) {
      seen.crashes++;
      await reopen();
    }
    const cur = q!;
    const ids = [...model.keys()];
    const pick = (n: number) => ids[n % Math.max(1, ids.length)];
    switch (op.t) {
      case 'enqueue': {
        const id = nextId++;
        const data = Buffer.from(`Subject: ${id}\r\n\r\n${'x'.repeat(id % 300)}\r\n`);
        submit(cur, id, op.rcpts, data, [data]);
        break;
      }
      case 'stream': {
        // Written in several parts with the event loop turning in between (a crash may strike
        // mid-stream), then accepted — or abandoned, like a client that goes away.
        const id = nextId++;
        const data = contentOf(id, op.size);
        const spool = cur.spool(id);
        const step = Math.ceil(data.length / op.writes);
        for (let at = 0; at < data.length && !fs.dead; at += step) {
          if (!spool.write(data.subarray(at, at + step))) await Promise.race([spool.drained(), pause(2)]);
          await pause();
        }
        if (op.abort || fs.dead) {
          spool.abort();
          seen.aborted++;
          break;
        }
        seen.streamed++;
        submit(cur, id, op.rcpts, data, spool);
        break;
      }
      case 'compact':
        void cur.compactData(0).then(
          (n) => (seen.compacted += n),
          () => {},
        );
        break;
      case 'hold':
      case 'release': {
        const id = pick(op.pick);
        if (id !== undefined) void (op.t === 'hold' ? cur.hold(id) : cur.release(id)).catch(() => {});
        break;
      }
      case 'delete': {
        const id = pick(op.pick);
        const m = id === undefined ? undefined : model.get(id);
        if (id === undefined || !m) break;
        const before = [...m.rcpts].filter(([, s]) => s === 'pending').map(([a]) => a);
        for (const a of before) mark(id, a, 'maybe');
        cur.remove(id).then(
          (r) => {
            // A piece a delivery held past the settle timeout was left alone, or the message was
            // not in the queue yet (its accept still writing): nothing was deleted.
            if (r.busy > 0 || r.pieces === 0) return;
            for (const a of before) mark(id, a, 'done');
            seen.deleted++;
          },
          () => {},
        );
        break;
      }
      case 'flush':
        void cur.flushHeld(op.dom).catch(() => {});
        break;
      case 'advance':
        clock.advance(op.ms);
        break;
      case 'settle':
        await pause(5);
        break;
    }
    await pause();
    if (!fs.dead) checkLanes(q!);
  }
  if (fs.dead) await reopen();
  await pause(2);
  // Without a restart, one flush of each held domain delivers everything in it, however many
  // flushes failed before (a piece deferred back into its lane stays flushable).
  if (!fs.dead) {
    fs.crashAfter(Number.POSITIVE_INFINITY);
    // Deliveries that chose their fate before it was cleared end first (one may hold a piece).
    await quiet(q!, clock, 'before the flushes');
    fates.clear();
    for (const d of HELD) {
      await q!.flushHeld(d);
      await quiet(q!, clock, `flush of ${d}`);
      assert.equal(q!.heldCount(d), 0, `${d} delivered by one flush`);
    }
    checkLanes(q!);
  }
  // A power cut now, then deliver everything: every recipient ends.
  fs.crash();
  crashes.length = 0;
  await reopen();
  fates.clear();
  for (let round = 0; round < 12 && internals(q!).core.msgs.count > 0; round++) {
    for (const id of [...internals(q!).core.msgs.byId.keys()]) await q!.release(id);
    for (const d of HELD) await q!.flushHeld(d);
    q!.flushRetries();
    clock.advance(9 * 3_600_000);
    await quiet(q!, clock, 'the final deliveries');
  }
  assert.equal(internals(q!).core.msgs.count, 0, 'everything delivered');
  assert.deepEqual(badData, [], 'delivered data differs from what was accepted');
  for (const m of model.values()) for (const s of m.rcpts.values()) assert.notEqual(s, 'pending');
  // A further pass that rolls segments over, then only each lane's current segment may remain.
  for (let i = 0; i < 30; i++)
    await q!.accept({ data: [Buffer.alloc(300, 65)], sender: '', recipients: [{ address: `z${i}@n.test` }] });
  // Their deliveries end, and the reclaim passes their durable batches start.
  await quiet(q!, clock, 'the roll-over pass');
  assert.equal(internals(q!).core.msgs.count, 0);
  for (const lane of await mem.readdir('/q/lanes')) {
    const segs = (await mem.readdir(`/q/lanes/${lane}`)).map(parseSegmentName);
    const cur = internals(q!).writer.currentSeq(lane);
    // The writer creates the next segment ahead of need; it may exist, holding nothing.
    const prepared = (s: number | undefined) =>
      s === cur + 1 &&
      scanSegment(mem.peek(`/q/lanes/${lane}/${segmentName(s)}`), true, () => {}).records === 0;
    assert.deepEqual(
      segs.filter((s) => s !== cur && !prepared(s)),
      [],
      `garbage left in ${lane} (current ${cur}): ${segs}`,
    );
  }
  await q!.stop();
}

/** Batches of random histories run at most, until every path of `seen` was exercised. */
const MAX_BATCHES = 5;

/**
 * Histories that once failed, run first in every batch. A spare taken into the data lane whose
 * rename was durable in the lane but not in spare/: the file had two names, and later starts
 * zeroed the live segment through its spare name (seed 220207684; docs/reliability.md).
 */
const REGRESSIONS: Array<[Op[], number[], number]> = [
  [
    [
      { t: 'stream', rcpts: [{ dom: 'n.test', fates: [] }], size: 3900, writes: 5, abort: false },
      { t: 'enqueue', rcpts: [{ dom: 'n.test', fates: [] }] },
      { t: 'stream', rcpts: [{ dom: 'n.test', fates: [] }], size: 3146, writes: 2, abort: false },
      {
        t: 'enqueue',
        rcpts: [
          { dom: 'n.test', fates: ['deferred'] },
          { dom: 'n.test', fates: [] },
        ],
      },
      { t: 'stream', rcpts: [{ dom: 'n.test', fates: [] }], size: 1761, writes: 4, abort: false },
    ],
    [23, 21],
    1,
  ],
];

test('random histories with power cuts keep every acknowledged recipient and leave no garbage', async () => {
  const replay = process.env.QUEUE_MODEL_SEED !== undefined;
  const unexercised = () => Object.entries(seen).filter(([k, v]) => k !== 'duplicated' && v === 0);
  // Rare paths (a recovery that repairs a move cut by the power) may be missed by one batch of
  // random histories: more batches are run, each with a new seed, until every path was taken.
  for (
    let batch = 0;
    batch < (replay ? 1 : MAX_BATCHES) && (batch === 0 || unexercised().length > 0);
    batch++
  )
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { minLength: 1, maxLength: 60 }),
        fc.array(fc.oneof(fc.nat(8), fc.nat(60)), { maxLength: 6 }),
        fc.nat(),
        async (ops, crashes, sched) => run(ops, crashes, sched),
      ),
      {
        numRuns: Number(process.env.QUEUE_MODEL_RUNS ?? 200),
        includeErrorInReport: true,
        ...(replay ? {} : { examples: REGRESSIONS }),
        // To replay a failure: QUEUE_MODEL_SEED=<seed> QUEUE_MODEL_PATH=<path>.
        ...(replay ? { seed: Number(process.env.QUEUE_MODEL_SEED) } : {}),
        ...(process.env.QUEUE_MODEL_PATH ? { path: process.env.QUEUE_MODEL_PATH } : {}),
      },
    );
  if (process.env.QUEUE_MODEL_STATS) console.log(seen);
  for (const [k] of unexercised()) assert.fail(`no run exercised ${k}`);
});
