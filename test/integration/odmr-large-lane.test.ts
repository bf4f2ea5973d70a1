// ATRN of a large held lane: the provider streams the lane, one message claimed at a time, instead
// of loading every envelope before the first byte. A daemon holds 4,000 messages for one ODMR
// domain (and a few split across two of the account's domains); logmta's own customer code
// collects them. When the first message reaches the customer, at most that message's pieces
// may be claimed (marked in flight) — loading the whole lane first claimed all 4,000 — and in
// the end every message arrives exactly once, the split ones once with all their recipients.
// The long version with time to first message and RSS is test/long/atrn-lane.ts.
// Fails: naming how many pieces were claimed before the first message, or what arrived twice.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { collect } from '../../src/odmr/index.js';
import { F_INFLIGHT } from '../../src/queue/state/tables.js';
import type { ReceivedMessage, ServerHooks } from '../../src/smtp/server/hooks.js';
import { startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { internals } from '../../src/queue/queue.js';

const TOML = `
[[odmr.account]]
user = "big"
password = "big-secret"
domains = ["big.example", "big-two.example"]
`;

const N = 4000;
const SPLIT = 20;
let d: TestDaemon;

before(async () => {
  d = await startTestDaemon({ toml: TOML });
  const data = [Buffer.from('Subject: held\r\n\r\nheld for the customer\r\n')];
  // Accepted concurrently: group commit makes this a few hundred fdatasyncs.
  const accepts: Array<Promise<unknown>> = [];
  for (let i = 0; i < N; i++) {
    const split = i % (N / SPLIT) === 0;
    const recipients = [
      { address: `u${i}@big.example` },
      ...(split ? [{ address: `v${i}@big-two.example` }] : []),
    ];
    accepts.push(
      d.daemon.queues.accept({
        data,
        sender: 'sender@outside.test',
        recipients,
        destinations: recipients.map((r) => ({ kind: 'held' as const, domain: r.address.split('@')[1]! })),
      }),
    );
    if (accepts.length >= 256) await Promise.all(accepts.splice(0));
  }
  await Promise.all(accepts);
});
after(() => d.stop());

/** Pieces of the account's held lanes that are claimed right now. */
function claimed(): number {
  let n = 0;
  for (const q of d.daemon.queues.list) {
    const P = internals(q).core.pieces;
    for (const name of ['held-big.example', 'held-big-two.example']) {
      const lane = internals(q).core.findLane(name);
      if (!lane) continue;
      for (let i = 0; i < lane.fifo.length; i++) {
        const p = lane.fifo.slotAt(i);
        if (internals(q).core.isCurrentIn(lane, p, lane.fifo.genAt(i)) && (P.flags[p]! & F_INFLIGHT) !== 0)
          n++;
      }
    }
  }
  return n;
}

test('ATRN streams a large held lane: the first message goes out with one claimed, all arrive once', async () => {
  assert.equal(d.daemon.queues.heldCount('big.example'), N);
  const got: ReceivedMessage[] = [];
  let claimedAtFirst = -1;
  let n = 0;
  const hooks: ServerHooks = {
    newMessageId: () => `c${++n}`,
    async accept(m) {
      if (got.length === 0) claimedAtFirst = claimed();
      got.push(m);
      return { queueId: m.id };
    },
  };
  const r = await collect({
    host: '127.0.0.1',
    port: Number(d.daemon.addresses.odmr[0]!.split(':').at(-1)),
    user: 'big',
    password: 'big-secret',
    session: { hostname: 'customer.test' },
    hooks,
  });
  assert.deepEqual(r, { status: 'received', messages: N, complete: true });
  assert.ok(
    claimedAtFirst >= 1 && claimedAtFirst <= 2,
    `${claimedAtFirst} pieces claimed when the first message arrived (the whole lane is ${N + SPLIT})`,
  );
  // Every recipient once; each split message once, with both its recipients.
  const rcpts = got.flatMap((m) => m.recipients.map((x) => x.address));
  assert.equal(new Set(rcpts).size, rcpts.length, 'a recipient arrived twice');
  assert.equal(rcpts.length, N + SPLIT);
  assert.equal(got.filter((m) => m.recipients.length === 2).length, SPLIT);
  assert.equal(d.daemon.queues.heldCount('big.example'), 0);
  assert.equal(d.daemon.queues.heldCount('big-two.example'), 0);
  assert.equal(claimed(), 0, 'nothing left claimed');
});
