// The shared limits against a real redis-server: counts are shared by every user of the same
// Redis (two links stand for two nodes), and each limit decides locally — with this node's
// share — while Redis is gone, then shares again once it is back.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RedisServer, redisMissing } from '../../test/support/redis.js';
import type { ClusterConfig } from '../config/index.js';
import { nullLogger } from '../log.js';
import { systemClock } from '../util/clock.js';
import { Keys } from './keys.js';
import { defineScripts, SharedConnections, SharedGcra, SharedRate, takeWindow } from './limits.js';
import { RedisLink } from './redis.js';

function link(url: string): RedisLink {
  const l = new RedisLink({ redis: { kind: 'url', url }, redisTimeoutMs: 300 } as ClusterConfig, nullLogger);
  defineScripts(l.client);
  return l;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('shared limits on a real Redis', { skip: redisMissing() }, () => {
  let redis: RedisServer;
  let one: RedisLink;
  let two: RedisLink;
  const keys = new Keys('t:');

  before(async () => {
    redis = await RedisServer.start();
    one = link(redis.url);
    two = link(redis.url);
    await one.start();
    await two.start();
  });
  after(async () => {
    await one?.close();
    await two?.close();
    await redis?.stop();
  });

  test('a window counted over two nodes', async () => {
    const a = new SharedRate(one, keys, 'w', 3, 60_000, systemClock);
    const b = new SharedRate(two, keys, 'w', 3, 60_000, systemClock);
    assert.deepEqual(
      [await a.take('ip'), await b.take('ip'), await a.take('ip'), await b.take('ip'), await a.take('other')],
      [true, true, true, false, true],
    );
  });

  test("a window's first refusal is told to exactly one node (limit + 1), later ones are limit + 2", async () => {
    const take = (l: RedisLink) => takeWindow(l, keys, 'client-message', '192.0.2.1', 2, 60_000);
    assert.deepEqual(
      [await take(one), await take(two), await take(two), await take(one), await take(two)],
      [1, 2, 3, 4, 4],
    );
  });

  test('GCRA: cells are booked in turn over two nodes; too far ahead is refused', async () => {
    // A cell a second. The waits are counted on Redis's clock, which moves on while the calls
    // go back and forth: each bound allows for the time the calls took (a loaded machine).
    const rate = { count: 10, periodMs: 10_000, burst: 1 };
    const a = new SharedGcra(one, keys, rate, systemClock, () => 2);
    const b = new SharedGcra(two, keys, rate, systemClock, () => 2);
    const t0 = Date.now();
    const w0 = await a.book('mx:x', 10_000);
    const w1 = await b.book('mx:x', 10_000);
    const t1 = Date.now() - t0;
    const w2 = await a.book('mx:x', 10_000);
    const t2 = Date.now() - t0;
    assert.equal(w0, 0);
    assert.ok(w1 <= 1000 && w1 >= 1000 - t1, `second cell 1 s on: ${w1} (booked ${t1} ms after the first)`);
    assert.ok(w2 <= 2000 && w2 >= 2000 - t2, `third 2 s on: ${w2} (booked ${t2} ms after the first)`);
    assert.equal(await b.book('mx:x', 500), -1, 'further off than the caller waits: refused, not booked');
    const w3 = await b.book('mx:x', 10_000);
    assert.ok(w3 <= 3000 && w3 >= 3000 - (Date.now() - t0), `the refused call booked nothing: ${w3}`);
  });

  test('connection leases: the cluster-wide limit, freed by release', async () => {
    const a = new SharedConnections(one, keys, 2, 'a', systemClock, () => 2);
    const b = new SharedConnections(two, keys, 2, 'b', systemClock, () => 2);
    const r1 = await a.acquire('mx:y');
    const r2 = await b.acquire('mx:y');
    assert.ok(r1 && r2);
    assert.equal(await a.acquire('mx:y'), undefined);
    r1();
    await until(() => true, 'release');
    let r3: (() => void) | undefined;
    for (let i = 0; i < 50 && !r3; i++) r3 = await a.acquire('mx:y');
    assert.ok(r3, 'a released slot is free again');
    r2();
    r3();
    a.stop();
    b.stop();
  });

  test('without Redis each node counts alone, with its share; shared again when Redis is back', async () => {
    const a = new SharedRate(one, keys, 'fb', 2, 60_000, systemClock);
    const conns = new SharedConnections(one, keys, 4, 'a', systemClock, () => 2);
    await redis.kill();
    await until(() => !one.up || one.client.status !== 'ready', 'the link to notice');
    const before = one.stats.fallbacks;
    assert.deepEqual([await a.take('ip'), await a.take('ip'), await a.take('ip')], [true, true, false]);
    const c1 = await conns.acquire('mx:z');
    const c2 = await conns.acquire('mx:z');
    assert.ok(c1 && c2);
    assert.equal(await conns.acquire('mx:z'), undefined, 'share of 4 over 2 nodes: 2');
    assert.ok(one.stats.fallbacks > before, 'fallbacks counted');
    assert.equal(one.up, false);
    await redis.start();
    await until(() => one.client.status === 'ready', 'reconnected');
    assert.equal(await a.take('ip2'), true);
    assert.equal(one.up, true, 'shared again');
    conns.stop();
  });
});
