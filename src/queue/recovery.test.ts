// Recovery of multi-file batches: a crash at every file operation of a split accept and of a
// split move, and piece numbers that must not be reused (docs/queue-states.md S6-S10).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { scanSegment } from './log/reader.js';
import { type DoneRecord, decodeDone, RT_DONE } from './record/records.js';
import { internals, Queue } from './queue.js';
import type { Deliverer } from './types.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { CrashFs, msg, quiet } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';
import { FakeClock } from '../../test/support/clock.js';

/** Pending recipient addresses of every live piece of a message, sorted. */
async function pendingOf(q: Queue, msgId: number): Promise<string[]> {
  const m = internals(q).core.msgs.byId.get(msgId);
  if (m === undefined) return [];
  const out: string[] = [];
  for (const p of internals(q).core.piecesOf(m)) {
    if (!internals(q).core.isLive(p)) continue;
    const env = await q.readEnvelope(p);
    for (const i of q.pendingOf(p, env)) out.push(env.info.recipients[i]!.address);
  }
  return out.sort();
}

const unique = (a: string[]) => [...new Set(a)];

/**
 * Runs `work` on a fresh queue over `mem`, crashing after `n` file operations, or at the end:
 * when the work and what it set going are done, or (`ready`) once a condition holds.
 */
async function crashDuring(
  mem: MemQueueFs,
  n: number,
  work: (q: Queue) => Promise<unknown>,
  stall?: (path: string) => boolean,
  ready?: () => boolean,
): Promise<boolean> {
  const fs = new CrashFs(mem);
  fs.stallSync = stall;
  const clock = new FakeClock();
  const q = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 });
  fs.crashAfter(n);
  // The work and whatever it set going (deliveries, moves) run to their end, or the crash
  // freezes them.
  let ended = false;
  void work(q)
    .then(() => quiet(q, clock, 'the work done', { unless: () => fs.dead }))
    .catch(() => {})
    .finally(() => {
      ended = true;
    });
  await waitFor(() => fs.dead || (ready ? ready() : ended), `a crash after ${n} operations or the work done`);
  const crashed = fs.dead;
  fs.crash();
  return crashed;
}

describe('recovery of multi-file batches', () => {
  test('a crash at any point of a split accept leaves the whole message or no live piece at all without data', async () => {
    const input = {
      data: msg('split'),
      sender: 'a@x.test',
      recipients: [{ address: 'u@normal.test' }, { address: 'v@held.test' }],
      destinations: [{ kind: 'new' as const }, { kind: 'held' as const, domain: 'held.test' }],
    };
    for (let n = 0; ; n++) {
      const mem = new MemQueueFs();
      let acked: number | undefined;
      const crashed = await crashDuring(mem, n, async (q) => {
        acked = (await q.accept(input)).msgId;
      });
      const q = await Queue.open({ dir: '/q', fs: mem, clock: new FakeClock(), segmentSize: 4096 });
      for (const m of internals(q).core.msgs.byId.values()) {
        const id = internals(q).core.msgs.id[m]!;
        assert.ok((await q.readData(m, id)).equals(input.data[0]!), `crash after ${n}: data readable`);
      }
      if (acked !== undefined) {
        assert.deepEqual(await pendingOf(q, acked), ['u@normal.test', 'v@held.test'], `crash after ${n}`);
      }
      if (!crashed) break;
    }
  });

  test('envelopes whose data never became durable are ended and reported (the accept was never acknowledged)', async () => {
    const mem = new MemQueueFs();
    let acked = false;
    const envelopeLanes = (p: string) =>
      p.startsWith('/q/lanes/new/') || p.startsWith('/q/lanes/held-held.test/');
    const envelopeBytes = () =>
      mem
        .paths()
        .filter(envelopeLanes)
        .reduce((n, p) => n + mem.peek(p).length, 0);
    let firstBytes = Number.POSITIVE_INFINITY;
    // The crash comes when the second message's envelopes are durable and its data is not.
    const envelopesDurableDataNot = () =>
      envelopeBytes() > firstBytes &&
      !mem.unsynced().some(envelopeLanes) &&
      mem.unsynced().some((p) => p.startsWith('/q/lanes/data/'));
    const work = async (q: Queue) => {
      const input = {
        data: msg('split'),
        sender: 'a@x.test',
        recipients: [{ address: 'u@normal.test' }, { address: 'v@held.test' }],
        destinations: [{ kind: 'new' as const }, { kind: 'held' as const, domain: 'held.test' }],
      };
      await q.accept(input); // creates the segments
      firstBytes = envelopeBytes();
      (internals(q).fs as CrashFs).stallSync = (path) => path.includes('/lanes/data/');
      await q.accept({
        data: msg('split'),
        sender: 'a@x.test',
        recipients: [{ address: 'u@normal.test' }, { address: 'v@held.test' }],
        destinations: [{ kind: 'new' }, { kind: 'held', domain: 'held.test' }],
      });
      acked = true;
    };
    await crashDuring(mem, Number.POSITIVE_INFINITY, work, undefined, envelopesDurableDataNot);
    assert.equal(acked, false);
    const q = await Queue.open({ dir: '/q', fs: mem, clock: new FakeClock() });
    assert.equal(q.recovery!.missingData.length, 1);
    assert.equal(internals(q).core.msgs.count, 1, 'only the first message');
    assert.equal(q.heldCount('held.test'), 1);
    mem.crash();
    const q2 = await Queue.open({ dir: '/q', fs: mem, clock: new FakeClock() });
    assert.equal(internals(q2).core.msgs.count, 1, 'the repair was durable');
    assert.deepEqual(q2.recovery!.missingData, []);
  });

  test('a crash at any point of a split move loses no recipient (the old version wins until the move is whole)', async () => {
    // u is deferred to the retry ladder, v to its ETRN domain's held lane: one move writes the
    // data copy, two envelopes in two lanes, then the old version's Done.
    const deliver: Deliverer = async (job) => {
      await job.finish(
        job.pending.map((i) =>
          job.envelope.info.recipients[i]!.address.startsWith('v@')
            ? { rcpt: i, status: 'deferred' as const, hold: 'etrn.test' }
            : { rcpt: i, status: 'deferred' as const },
        ),
      );
    };
    let restored = 0;
    for (let n = 0; ; n++) {
      const mem = new MemQueueFs();
      const clock = new FakeClock();
      const q0 = await Queue.open({ dir: '/q', fs: mem, clock, segmentSize: 4096 });
      const { msgId } = await q0.accept({
        data: msg('move'),
        sender: 'a@x.test',
        recipients: [{ address: 'u@a.test' }, { address: 'v@etrn.test' }],
      });
      const crashed = await crashDuring(mem, n, async (q) => {
        q.setDeliverer(deliver);
        q.start();
      });
      const q = await Queue.open({ dir: '/q', fs: mem, clock, segmentSize: 4096 });
      restored += q.recovery!.repaired;
      // Both recipients still pending; a recipient may be pending in two pieces (a duplicate).
      assert.deepEqual(unique(await pendingOf(q, msgId)), ['u@a.test', 'v@etrn.test'], `crash after ${n}`);
      assert.deepEqual(q.recovery!.corruptions, []);
      // The repair itself is durable and stable: another power cut changes nothing.
      mem.crash();
      const q2 = await Queue.open({ dir: '/q', fs: mem, clock, segmentSize: 4096 });
      assert.deepEqual(unique(await pendingOf(q2, msgId)), ['u@a.test', 'v@etrn.test'], `again after ${n}`);
      assert.equal(q2.recovery!.repaired, 0);
      if (!crashed) break;
    }
    assert.ok(restored > 0, 'some crash point left a move without its Done');
  });

  test('a piece number is never reused, even when only the Done of the earlier piece is left', async () => {
    const mem = new MemQueueFs();
    const clock = new FakeClock();
    const opts = { dir: '/q', fs: mem, clock, segmentSize: 4096 };
    const q1 = await Queue.open(opts);
    // Piece 0 {w, x} in new, piece 1 {y} in held-b.test, followed by enough mail in held-b.test
    // to fill its first segment.
    const { msgId } = await q1.accept({
      data: msg('m'),
      sender: 'a@x.test',
      recipients: [{ address: 'w@n.test' }, { address: 'x@n.test' }, { address: 'y@b.test' }],
      destinations: [{ kind: 'new' }, { kind: 'new' }, { kind: 'held', domain: 'b.test' }],
    });
    for (let i = 0; i < 40; i++)
      await q1.accept({
        data: msg(i),
        sender: 'a@x.test',
        recipients: [{ address: `f${i}@b.test` }],
        destinations: [{ kind: 'held', domain: 'b.test' }],
      });
    // One message stays held after them, so the segment holding the Dones stays too.
    await q1.accept({
      data: msg('k'),
      sender: 'a@x.test',
      recipients: [{ address: 'k@b.test' }],
      destinations: [{ kind: 'held', domain: 'b.test' }],
    });
    q1.setDeliverer(async (job) => {
      await job.finish(
        job.pending.map((i) => {
          const a = job.envelope.info.recipients[i]!.address;
          if (a.endsWith('@n.test')) return { rcpt: i, status: 'deferred' as const, hold: 'c.test' };
          return { rcpt: i, status: a === 'k@b.test' ? ('deferred' as const) : ('delivered' as const) };
        }),
      );
    });
    q1.start();
    await waitFor(() => q1.heldCount('c.test') === 1, 'the piece held for c.test');
    await quiet(q1, clock);
    assert.equal(await q1.flushHeld('b.test'), 42);
    // Segments are unlinked in the background after a durable batch.
    await waitFor(
      () => !mem.paths().includes('/q/lanes/held-b.test/0000000001.seg'),
      'the old envelope gone (its segment unlinked)',
    );
    const dones = mem
      .paths()
      .filter((p) => p.startsWith('/q/lanes/held-b.test/'))
      .flatMap((p) => {
        const out: DoneRecord[] = [];
        scanSegment(mem.peek(p), true, (r) => r.type === RT_DONE && out.push(decodeDone(r.body)));
        return out;
      });
    assert.ok(
      dones.some((d) => d.msgId === msgId && d.piece === 1),
      'the Done of piece 1 is still on disk',
    );
    mem.crash();
    // After a restart, piece 0 splits: w stays held for c.test, x goes to a.test in a new piece,
    // in a lane that recovery scans before held-b.test, where the old piece 1's Done still is.
    const q2 = await Queue.open(opts);
    q2.setDeliverer(async (job) => {
      await job.finish(
        job.pending.map((i) =>
          job.envelope.info.recipients[i]!.address.startsWith('x@')
            ? { rcpt: i, status: 'deferred' as const, hold: 'a.test' }
            : { rcpt: i, status: 'deferred' as const },
        ),
      );
    });
    q2.start();
    await q2.flushHeld('c.test');
    assert.equal(q2.heldCount('a.test'), 1);
    const pieces = internals(q2)
      .core.piecesOf(internals(q2).core.msgs.byId.get(msgId)!)
      .map((p) => internals(q2).core.pieces.piece[p]);
    assert.ok(!pieces.includes(1), `piece numbers in use: ${pieces}`);
    mem.crash();
    const q3 = await Queue.open(opts);
    assert.deepEqual(await pendingOf(q3, msgId), ['w@n.test', 'x@n.test']);
  });
});
