// Probes as customers meet them (issue 10): the customer's host is down when its mail arrives, the
// periodic probe fails interval after interval without writing a byte to the queue, and the first
// probe after the host comes up delivers the held mail — no ETRN needed — although the delivery
// attempt at arrival left the host in the dead-host cache. A probe and an ETRN at the same moment
// deliver each message once.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileSizes } from '../support/daemon.js';
import { type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();

async function setup(interval: string): Promise<{ s: Stage; host: CustomerHost }> {
  const host = await scene.customer();
  const s = await scene.stage({
    toml: `
[log]
level = "debug"

[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${host.port}"
probe_interval = "${interval}"
`,
  });
  return { s, host };
}

const count = (s: Stage, msg: string) => s.logLines().filter((l) => l.msg === msg).length;

describe('probe scenarios', () => {
  test('down at arrival, probes fail for several intervals writing nothing, host up: the next probe delivers', async () => {
    const { s, host } = await setup('250ms');
    const mail = ['a@branch.example', 'b@branch.example', 'c@branch.example'];
    await s.send(mail);
    await s.waitHeld('branch.example', 3);
    // The baseline: the queue files once they stay the same over a failed probe (the deferrals'
    // own records are all written by then).
    const queueDir = join(s.dataDir, 'queue');
    let before = fileSizes(queueDir);
    for (let settled = false; !settled; ) {
      await s.waitLog('etrn probe failed', count(s, 'etrn probe failed') + 1);
      const now = fileSizes(queueDir);
      settled = JSON.stringify([...now]) === JSON.stringify([...before]);
      before = now;
    }
    const failed = count(s, 'etrn probe failed');
    await s.waitLog('etrn probe failed', failed + 5, 20_000);
    assert.deepEqual(fileSizes(queueDir), before, 'failed probes changed no queue file');
    assert.equal(await s.held('branch.example'), 3);
    await host.up();
    const t0 = Date.now();
    await host.waitFor(3, 'delivery by the next probe', 10_000);
    const ms = Date.now() - t0;
    assert.deepEqual(host.recipients().sort(), mail);
    await s.waitHeld('branch.example', 0);
    // (The log is buffered, at most 100 ms late: wait for the line rather than read it now.)
    await s.waitLog('etrn probe succeeded');
    assert.equal(
      s.logLines().filter((l) => l.msg === 'etrn').length,
      0,
      'no ETRN was sent: the probe alone delivered',
    );
    assert.ok(ms < 10_000, `delivered ${ms} ms after the host came up`);
  });

  test('probes every 100 ms and two ETRNs at once as the host comes up: each message arrives once', async () => {
    const { s, host } = await setup('100ms');
    const mail = Array.from({ length: 12 }, (_, i) => `m${i}@branch.example`);
    await s.send(mail);
    await s.waitHeld('branch.example', 12);
    await host.up({ delayMs: 10 });
    // Probes run every 100 ms from now on; ETRNs land in the middle of them.
    const replies = await Promise.all([s.etrn('branch.example'), s.etrn('branch.example')]);
    for (const r of replies) assert.match(r, /^25[13] /);
    await host.waitFor(12);
    await s.waitHeld('branch.example', 0);
    assert.deepEqual(host.recipients().sort(), [...mail].sort());
  });
});
