// The report policy as the queue applies it: one NOTIFY rule (dsn.ts shouldNotify) decides which
// outcomes get a report, and the queue appends exactly those. An empty NOTIFY list is the RFC 3461
// default (failures are reported), the same as no NOTIFY at all.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { internals, Queue } from '../queue/queue.js';
import type { DeliveryJob, EnvelopeRecord } from '../queue/types.js';
import { shouldNotify } from './dsn.js';
import { makeReporter, mayWantDelay, wantsReport } from './reports.js';
import { FakeClock } from '../../test/support/clock.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { msg } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';

describe('report policy', () => {
  test('a bounce goes out exactly when shouldNotify says so, and an empty NOTIFY is the default', async () => {
    const q = await Queue.open({
      dir: '/q',
      fs: new MemQueueFs(),
      clock: new FakeClock(),
      hooks: { reports: makeReporter('mx.test') },
    });
    const bounced: string[] = [];
    q.setDeliverer(async (job: DeliveryJob) => {
      if (job.envelope.info.report) {
        const text = (await job.data()).map((b) => b.toString()).join('');
        for (const m of text.matchAll(/^Final-Recipient: rfc822;\s*(\S+)/gim)) bounced.push(m[1]!);
        await job.finish(job.pending.map((i) => ({ rcpt: i, status: 'delivered' as const })));
        return;
      }
      await job.finish(job.pending.map((i) => ({ rcpt: i, status: 'failed' as const, code: 550 })));
    });
    q.start();
    const cases: Array<[string, string[] | undefined]> = [
      ['absent@y.test', undefined],
      ['empty@y.test', []],
      ['never@y.test', ['NEVER']],
      ['failure@y.test', ['FAILURE']],
      ['success@y.test', ['SUCCESS']],
      ['delay@y.test', ['DELAY']],
    ];
    for (const [address, notify] of cases)
      await q.accept({
        data: msg(address),
        sender: 'a@x.test',
        recipients: [notify === undefined ? { address } : { address, notify }],
      });
    await waitFor(() => internals(q).core.msgs.count === 0, 'every message and its report gone');
    const expected = cases.filter(([, n]) => shouldNotify('a@x.test', 'failure', n)).map(([a]) => a);
    assert.deepEqual(expected, ['absent@y.test', 'empty@y.test', 'failure@y.test']);
    assert.deepEqual(bounced.sort(), expected.sort());
    await q.stop();
  });

  test('the byte test for envelopes an older version wrote is false only where no recipient is owed a delay report', () => {
    const notifies: Array<string[] | undefined> = [
      undefined,
      [],
      ['NEVER'],
      ['FAILURE'],
      ['SUCCESS', 'FAILURE'],
      ['DELAY'],
      ['FAILURE', 'DELAY'],
      ['SUCCESS', 'DELAY', 'FAILURE'],
    ];
    const senders = ['a@x.test', ''];
    let seen = 0;
    for (const sender of senders)
      for (const a of notifies)
        for (const b of notifies) {
          const env: EnvelopeRecord = {
            msgId: 1,
            piece: 0,
            version: 1,
            due: 0,
            arrival: 0,
            rcptCount: 2,
            info: {
              sender,
              recipients: [
                a === undefined ? { address: 'p@y.test' } : { address: 'p@y.test', notify: a },
                b === undefined ? { address: 'q@y.test' } : { address: 'q@y.test', notify: b },
              ],
              size: 1,
              attempts: 0,
              history: [{ t: 0, ev: 'accepted' }],
            },
          };
          const owed = env.info.recipients.some((r, i) =>
            wantsReport('delay', env, r, { rcpt: i, status: 'deferred' }),
          );
          const json = Buffer.from(JSON.stringify(env.info));
          if (owed) {
            assert.equal(mayWantDelay(json), true, JSON.stringify(env.info));
            seen++;
          } else if (sender !== '') assert.equal(mayWantDelay(json), false, 'no DELAY: no read'); // the null sender's may read
        }
    assert.ok(seen > 0);
  });
});
