// Reclaiming garbage segments (maintenance.ts) when unlinking fails: the pass stops and a later
// one (after the next durable batch) retries, instead of retrying at once in a loop that never
// yields to the event loop.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { internals, Queue } from './queue.js';
import { FakeClock } from '../../test/support/clock.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { msg, quiet, scripted } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';

/** Unlink calls after which the fake disk gives in, so that a spinning pass ends (and fails the test). */
const GIVE_IN = 20_000;

test('an unlink that fails ends the reclaim pass; the next durable batch retries it', async () => {
  const fs = new MemQueueFs();
  const clock = new FakeClock();
  // No spare pool: every reclaimed segment is unlinked (spares.test.ts covers the pool's faults).
  const q = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096, spareSegments: 0 });
  const unlink = fs.unlink.bind(fs);
  let broken = true;
  let unlinks = 0;
  fs.unlink = async (path) => {
    unlinks++;
    if (broken && unlinks < GIVE_IN) throw Object.assign(new Error(`EIO: unlink ${path}`), { code: 'EIO' });
    return unlink(path);
  };
  const d = scripted(() => 'delivered');
  q.setDeliverer(d.deliver);
  q.start();
  for (let i = 0; i < 100; i++)
    await q.accept({ data: msg(i), sender: 'a@x.test', recipients: [{ address: `b${i}@y.test` }] });
  await waitFor(() => internals(q).core.msgs.count === 0, 'the 100 messages delivered');
  await quiet(q, clock);
  // One attempt per pass, and a pass per durable batch (about two a message at most).
  assert.ok(unlinks < 1_000, `${unlinks} unlink attempts for ${d.seen.length} deliveries`);
  const segs = () => fs.paths().filter((p) => p.includes('/lanes/new/')).length;
  assert.ok(segs() > 2, 'the garbage segments are still there');
  // The disk works again: the next durable batch's pass reclaims them.
  broken = false;
  await q.accept({ data: msg('last'), sender: 'a@x.test', recipients: [{ address: 'c@y.test' }] });
  await waitFor(() => internals(q).core.msgs.count === 0 && segs() <= 2, 'the old segments unlinked');
  await q.stop();
});
