// A final outcome committed early (DeliveryJob.record: one destination of several is done) and
// the report it calls for must become durable together: a power cut may keep both or neither,
// never the failure without its bounce (the sender would never hear of it). The report's copy of
// the message is read from the log first; this test holds that read open while another batch is
// committed, then cuts the power.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { makeReporter } from '../delivery/reports.js';
import { FakeClock } from '../../test/support/clock.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { msg, quiet } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';
import { Queue } from './queue.js';
import type { DeliveryJob } from './types.js';

/** A memory file system whose reads can be held until released. */
class HeldReadsFs extends MemQueueFs {
  hold = false;
  held = 0;
  private waiting: Array<() => void> = [];

  private gate(): Promise<void> {
    if (!this.hold) return Promise.resolve();
    this.held++;
    return new Promise((r) => this.waiting.push(r));
  }

  release(): void {
    this.hold = false;
    for (const w of this.waiting.splice(0)) w();
  }

  override async read(p: string, pos: number, len: number): Promise<Buffer> {
    await this.gate();
    return super.read(p, pos, len);
  }

  override async readFile(p: string): Promise<Buffer> {
    await this.gate();
    return super.readFile(p);
  }
}

const open = (fs: MemQueueFs, clock: FakeClock) =>
  Queue.open({
    dir: '/q',
    fs,
    clock,
    segmentSize: 4096,
    hooks: { reports: makeReporter('mx.test') },
  });

describe('queue: a recorded failure and its report', () => {
  for (const cut of ['while the report is read', 'once the outcome is recorded'] as const)
    test(`a power cut ${cut} keeps both or neither`, async () => {
      const fs = new HeldReadsFs();
      const clock = new FakeClock();
      const q1 = await open(fs, clock);
      await q1.accept({
        data: msg(1),
        sender: 'a@x.test',
        recipients: [{ address: 'gone@y.test' }, { address: 'later@z.test' }],
      });
      fs.crash(); // the message is durable; after this start its data is read from the log
      const q2 = await open(fs, clock);
      let job: DeliveryJob | undefined;
      q2.setDeliverer(async (j) => {
        job = j;
        await new Promise(() => {}); // the other destination never answers
      });
      q2.start();
      await waitFor(() => job !== undefined, 'the message handed out');
      fs.hold = true;
      // gone@y.test failed at its destination; the other is still being tried.
      const recorded = job!.record([
        { rcpt: 0, status: 'failed', code: 550, enhanced: '5.1.1', text: 'no such user' },
      ]);
      await waitFor(() => fs.held > 0, 'the report read under way');
      // Another client's message is accepted meanwhile: its batch is made durable.
      await q2.accept({ data: msg(2), sender: 'c@x.test', recipients: [{ address: 'd@w.test' }] });
      if (cut === 'once the outcome is recorded') {
        fs.release();
        await recorded;
      }
      fs.crash();
      fs.release();

      const q3 = await open(fs, clock);
      const seen: Array<{ sender: string; rcpts: string[] }> = [];
      q3.setDeliverer(async (j) => {
        seen.push({
          sender: j.envelope.info.sender,
          rcpts: j.pending.map((i) => j.envelope.info.recipients[i]!.address),
        });
        await j.finish(j.pending.map((i) => ({ rcpt: i, status: 'delivered', code: 250 })));
      });
      q3.start();
      await waitFor(() => seen.length >= 2, 'the recovered mail delivered');
      await quiet(q3, clock);
      const retried = seen.some((s) => s.rcpts.includes('gone@y.test'));
      const bounced = seen.some((s) => s.sender === '' && s.rcpts.includes('a@x.test'));
      assert.ok(
        seen.some((s) => s.rcpts.includes('d@w.test')),
        'the other message survived',
      );
      assert.ok(
        retried !== bounced,
        `either the failure is redone or its bounce exists: ${JSON.stringify(seen)}`,
      );
      if (cut === 'once the outcome is recorded') assert.ok(bounced, 'a recorded failure has its bounce');
      await q3.close();
    });
});
