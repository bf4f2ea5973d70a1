// The held-lane cursor an ATRN session reads (Queue.openHeld): one message at a time, oldest
// first, its pieces in every requested lane together; a piece is claimed only when it is handed
// out, so what the cursor has not reached yet stays free for operator actions and expiry, and
// what changed before it got there is skipped.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Queue, internals } from './queue.js';
import { F_INFLIGHT } from './state/tables.js';
import type { DeliveryJob } from './types.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { FakeClock } from '../../test/support/clock.js';
import { msg } from '../../test/support/queue.js';

async function setup() {
  const clock = new FakeClock();
  const q = await Queue.open({ dir: '/q', fs: new MemQueueFs(), clock });
  const put = async (i: number, domains: string[]) => {
    const recipients = domains.map((d) => ({ address: `u${i}@${d}` }));
    const r = await q.accept({
      data: msg(i),
      sender: 'a@x.test',
      recipients,
      destinations: domains.map((domain) => ({ kind: 'held' as const, domain })),
    });
    clock.advance(1000);
    return r.msgId;
  };
  return { q, put };
}

const addresses = (g: DeliveryJob[]): string[] =>
  g.flatMap((j) => j.pending.map((r) => j.envelope.info.recipients[r]!.address)).sort();

describe('held-lane cursor (ATRN)', () => {
  test('one message at a time, oldest first, a split message once with its pieces in every requested lane', async () => {
    const { q, put } = await setup();
    await put(0, ['a.test']);
    await put(1, ['a.test', 'b.test']);
    await put(2, ['b.test']);
    await put(3, ['a.test']);
    const c = q.openHeld(['a.test', 'b.test']);
    const got: string[][] = [];
    for (let g = await c.next(); g; g = await c.next()) {
      got.push(addresses(g));
      for (const j of g) await j.finish(j.pending.map((r) => ({ rcpt: r, status: 'delivered' as const })));
    }
    assert.deepEqual(got, [['u0@a.test'], ['u1@a.test', 'u1@b.test'], ['u3@a.test'], ['u2@b.test']]);
    assert.equal(q.heldCount('a.test') + q.heldCount('b.test'), 0);
  });

  test('only what was handed out is claimed; the rest is free for operator actions, which the cursor then skips', async () => {
    const { q, put } = await setup();
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push(await put(i, ['a.test']));
    const c = q.openHeld(['a.test']);
    const first = (await c.next())!;
    const P = internals(q).core.pieces;
    let inflight = 0;
    for (let p = 0; p < P.cap; p++)
      if (internals(q).core.isLive(p) && (P.flags[p]! & F_INFLIGHT) !== 0) inflight++;
    assert.equal(inflight, 1, 'the first message alone is claimed');
    // Not reached yet: removed and released at once, not reported busy.
    assert.deepEqual(await q.remove(ids[2]!), { pieces: 1, busy: 0 });
    assert.deepEqual(await q.release(ids[3]!), { pieces: 1, busy: 0 });
    // Arrived after the cursor opened: for the next session.
    await put(9, ['a.test']);
    for (const j of first) await j.finish([]);
    const rest: string[][] = [];
    for (let g = await c.next(); g; g = await c.next()) {
      rest.push(addresses(g));
      for (const j of g) await j.finish([]);
    }
    assert.deepEqual(rest, [['u1@a.test'], ['u4@a.test']]);
    // Finished with nothing delivered: still held, claimable by the next session.
    assert.equal(q.heldCount('a.test'), 4);
    const again = q.openHeld(['a.test']);
    assert.equal(addresses((await again.next())!)[0], 'u0@a.test');
  });
});
