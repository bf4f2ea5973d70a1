// Queues riding out a full disk (queues.ts): what happens to deliveries that were in flight when
// a write found no space and the directory was reopened. The old queue can record nothing; the
// reopened one recovers those messages as pending. Without a handover it attempted them again
// at once, alongside the delivery still running (two copies to the recipient), and the first
// delivery's outcome was refused (a third attempt after it, had the second failed).
// Properties: a delivery in flight at the reopen is not started again while it runs; its
// outcome is recorded by the reopened queue and survives a crash; ATRN claims likewise.
// Fails: naming how many times the message was handed to the deliverer, or what stayed queued.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { msg } from '../../test/support/queue.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { waitFor } from '../../test/support/wait.js';
import { Queues, type StorageEvent } from './queues.js';
import type { DeliveryJob } from './types.js';

const rcpt = (address: string) => ({ address });

/** A promise and the function that resolves it. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}

async function openQueues(fs: MemQueueFs, events: StorageEvent[] = []): Promise<Queues> {
  return Queues.open(['/q'], {
    fs,
    segmentSize: 64 * 1024,
    reserve: 64 * 1024,
    onStorage: (ev) => events.push(ev),
  });
}

test('a delivery in flight when the disk fills is not started again by the reopened queue, and its outcome is kept', async () => {
  const fs = new MemQueueFs();
  const events: StorageEvent[] = [];
  const qs = await openQueues(fs, events);
  const calls = new Map<number, number>();
  const first = gate();
  let firstStarted = false;
  qs.setDeliverer(async (job: DeliveryJob) => {
    const n = (calls.get(job.msgId) ?? 0) + 1;
    calls.set(job.msgId, n);
    if (n === 1 && !firstStarted) {
      // The first attempt of the first message stays on the wire until the test lets it end.
      firstStarted = true;
      await first.promise;
    }
    await job.finish(job.pending.map((i) => ({ rcpt: i, status: 'delivered' as const, code: 250 })));
  });
  qs.start();
  const a = await qs.accept({ data: msg('a'), sender: 's@x.test', recipients: [rcpt('u@y.test')] });
  await waitFor(() => firstStarted, 'the first delivery to start');

  // The disk fills: the next write is refused and the queue reopens from disk.
  fs.injectFault('write', 'ENOSPC');
  fs.injectFault('create', 'ENOSPC');
  await assert.rejects(
    qs.accept({ data: msg('b'), sender: 's@x.test', recipients: [rcpt('v@y.test')] }),
    /QUEUE_FULL|not enough free space|ENOSPC/,
  );
  fs.clearFaults();
  await waitFor(() => events.some((e) => e.state === 'reopened'), 'the queue to reopen');
  // The reopened queue has the message (recovered as pending) and must leave it to the delivery
  // still in flight. Let the reopened queue's runner dispatch whatever it would.
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.equal(calls.get(a.msgId), 1, 'the reopened queue started a second delivery of a message in flight');

  // The first delivery ends: delivered. The reopened queue records it; nothing is sent again.
  first.open();
  await waitFor(() => qs.find(a.msgId) === undefined, 'the delivered message to leave the queue');
  assert.equal(calls.get(a.msgId), 1, `handed to the deliverer ${calls.get(a.msgId)} times`);
  await qs.stop();

  // The outcome is durable: after a power cut the message is not delivered again.
  fs.crash();
  const again = await openQueues(fs);
  assert.equal(again.find(a.msgId), undefined, 'the delivered message came back after a crash');
  await again.stop();
});

test('an ATRN claim in flight when the disk fills is finished through the reopened queue, not handed out twice', async () => {
  const fs = new MemQueueFs();
  const events: StorageEvent[] = [];
  const qs = await openQueues(fs, events);
  const a = await qs.accept({
    data: msg('held'),
    sender: 's@x.test',
    recipients: [rcpt('u@cust.test')],
    destinations: [{ kind: 'held', domain: 'cust.test' }],
  });
  qs.start();
  const cursor = qs.openHeld(['cust.test']);
  const claimed = await cursor.next();
  assert.equal(claimed?.length, 1);

  fs.injectFault('write', 'ENOSPC');
  fs.injectFault('create', 'ENOSPC');
  await assert.rejects(qs.accept({ data: msg('b'), sender: 's@x.test', recipients: [rcpt('v@y.test')] }));
  fs.clearFaults();
  await waitFor(() => events.some((e) => e.state === 'reopened'), 'the queue to reopen');

  // A second session while the first still holds the message: it must not get it.
  const second = await qs.openHeld(['cust.test']).next();
  assert.equal(second, undefined, 'the claimed message was handed to a second ATRN session');
  const flushed = await qs.flushHeld('cust.test');
  assert.equal(flushed, 0, 'an ETRN flush took the claimed message');

  await claimed![0]!.finish([{ rcpt: 0, status: 'delivered', code: 250 }]);
  await waitFor(() => qs.find(a.msgId) === undefined, 'the delivered message to leave the queue');
  await qs.stop();
  fs.crash();
  const again = await openQueues(fs);
  assert.equal(again.find(a.msgId), undefined, 'the delivered message came back after a crash');
  await again.stop();
});
