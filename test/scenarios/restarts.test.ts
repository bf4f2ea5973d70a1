// Restarts as customers meet them (issue 10): the daemon is stopped with SIGTERM or killed with
// SIGKILL between the mail's arrival and the customer's ETRN, or in the middle of the flush; after
// the restart one ETRN delivers everything that was acknowledged with 250 (a message in flight
// at a kill may arrive twice, never not at all). And a restart between every pair of steps.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();

async function setup(): Promise<{ s: Stage; host: CustomerHost }> {
  const host = await scene.customer();
  const s = await scene.stage({
    toml: `
[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${host.port}"
probe_interval = "1h"
`,
  });
  return { s, host };
}

const mail = (n: number) => Array.from({ length: n }, (_, i) => `u${i}@branch.example`);

/** Every expected recipient arrived; returns how many arrived more than once. */
function complete(host: CustomerHost, expected: string[]): number {
  const got = host.recipients();
  assert.deepEqual([...new Set(got)].sort(), [...expected].sort(), 'every acknowledged message arrived');
  return got.length - new Set(got).size;
}

describe('restart scenarios', () => {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`${signal} between arrival and ETRN: after the restart one ETRN delivers everything`, async () => {
      const { s, host } = await setup();
      const m = mail(6);
      await s.send(m);
      await s.waitHeld('branch.example', 6);
      await s.restart(signal);
      await s.waitHeld('branch.example', 6); // a deferral not yet written when killed is redone
      await host.up();
      assert.equal(
        await s.etrn('branch.example'),
        '253 2.0.0 OK, 6 pending messages for node branch.example started',
      );
      await host.waitFor(6);
      await s.waitHeld('branch.example', 0);
      assert.equal(complete(host, m), 0);
    });

    test(`${signal} in the middle of a flush: after the restart one ETRN delivers the rest`, async () => {
      const { s, host } = await setup();
      const n = 120;
      const m = mail(n);
      await s.send(m);
      await s.waitHeld('branch.example', n);
      await host.up({ delayMs: 10 }); // a slow customer line: the flush takes a while
      assert.match(await s.etrn('branch.example'), /^253 /);
      await host.waitFor(10);
      await s.restart(signal);
      const left = await s.held('branch.example');
      assert.ok(left > 0, 'the stop came before the flush was over');
      assert.equal(
        await s.etrn('branch.example'),
        `253 2.0.0 OK, ${left} pending messages for node branch.example started`,
      );
      await s.waitHeld('branch.example', 0, 30_000);
      await host.waitFor(n);
      // SIGTERM lets the deliveries in flight finish within the grace period and records them:
      // no duplicate. SIGKILL: duplicates only for what was in flight at the kill (one per open
      // connection at most, concurrency_per_destination = 20).
      const dups = complete(host, m);
      console.log(`# ${signal} mid-flush: ${left} left after the restart, ${dups} duplicates`);
      if (signal === 'SIGTERM') assert.equal(dups, 0, 'a SIGTERM mid-flush repeats nothing');
      else assert.ok(dups <= 20, `${dups} duplicates`);
    });
  }

  test('a restart between every pair of steps: arrival, ETRN while down, host up, ETRN', async () => {
    const { s, host } = await setup();
    const m = mail(4);
    await s.send(m);
    await s.waitHeld('branch.example', 4);
    // After each restart a deferral that was not yet written is redone (its piece is attempted
    // again from the lane it was durably in): wait for the lane to settle.
    await s.restart('SIGKILL');
    await s.waitHeld('branch.example', 4);
    assert.match(await s.etrn('branch.example'), /^253 2\.0\.0 OK, 4 pending/);
    await s.waitLog('etrn flush pass done');
    await s.restart('SIGTERM');
    await s.waitHeld('branch.example', 4);
    await host.up();
    await s.restart('SIGKILL');
    await s.waitHeld('branch.example', 4);
    assert.equal(
      await s.etrn('branch.example'),
      '253 2.0.0 OK, 4 pending messages for node branch.example started',
    );
    await host.waitFor(4);
    await s.waitHeld('branch.example', 0);
    await s.restart('SIGTERM');
    assert.equal(await s.etrn('branch.example'), '251 2.0.0 OK, no messages waiting for node branch.example');
    assert.equal(complete(host, m), 0);
  });
});
