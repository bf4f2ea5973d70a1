import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeClock } from '../../test/support/clock.js';
import { EtrnService, type HeldLanes } from './etrn.js';
import { lanesFor, parseEtrnArg } from './etrn-node.js';
import { HeldLocks } from './locks.js';
import { RateLimiter } from './rate.js';
import type { SmtpReply } from '../smtp/protocol/reply.js';

const clock = (): FakeClock => new FakeClock(1_000_000);

/** Held lanes whose flushes finish only when the test says so. */
function lanes(counts: Record<string, number>) {
  const flushes: { domain: string; done: () => void }[] = [];
  const l: HeldLanes = {
    heldCount: (d) => counts[d] ?? 0,
    flushHeld: (d) =>
      new Promise<number>((resolve) => {
        flushes.push({ domain: d, done: () => resolve(counts[d] ?? 0) });
      }),
  };
  return { l, flushes, counts };
}

const ctx = (ip = '192.0.2.1') => ({ client: { ip, port: 1 } });
const DOMAINS = [
  { domain: 'branch.example', subdomains: false },
  { domain: 'shop.example', subdomains: true },
  { domain: 'a.example', subdomains: false },
  { domain: 'b.example', subdomains: false },
];

/** The hook's reply when it answered at once (a local rate limit always does). */
function sync(r: SmtpReply | Promise<SmtpReply>): SmtpReply {
  assert.ok(!(r instanceof Promise), 'the local hook answers at once');
  return r;
}

describe('ETRN arguments', () => {
  test('node, @subtree and #queue forms are parsed; malformed ones are null', () => {
    assert.deepEqual(parseEtrnArg('Branch.Example.'), {
      kind: 'node',
      name: 'branch.example',
      raw: 'Branch.Example.',
    });
    assert.equal(parseEtrnArg('@shop.example')?.kind, 'subtree');
    assert.equal(parseEtrnArg('#held-a.example')?.kind, 'queue');
    for (const bad of ['', 'a b', '@', '#', 'bad..name', '-x.example', 'x@y'])
      assert.equal(parseEtrnArg(bad), null, bad);
  });

  test('only configured ETRN domains are ever named', () => {
    const f = (a: string) => lanesFor(parseEtrnArg(a)!, DOMAINS);
    assert.deepEqual(f('branch.example'), ['branch.example']);
    assert.deepEqual(f('sub.branch.example'), []);
    assert.deepEqual(f('deep.sub.shop.example'), ['shop.example']);
    assert.deepEqual(f('@example'), ['branch.example', 'shop.example', 'a.example', 'b.example']);
    assert.deepEqual(f('@x.shop.example'), ['shop.example']);
    assert.deepEqual(f('#held-a.example'), ['a.example']);
    assert.deepEqual(f('#b.example'), ['b.example']);
    assert.deepEqual(f('evil.example'), []);
    assert.deepEqual(f('@org'), []);
  });
});

describe('ETRN service', () => {
  test('the reply carries the exact count over every lane named; 251 only when all are empty', () => {
    const { l } = lanes({ 'a.example': 2, 'b.example': 3 });
    const s = new EtrnService({ domains: DOMAINS, lanes: l, clock: clock() });
    assert.deepEqual(sync(s.hook('@example', ctx())), {
      code: 253,
      enhanced: '2.0.0',
      text: 'OK, 5 pending messages for node @example started',
    });
    assert.equal(sync(s.hook('branch.example', ctx())).code, 251);
    assert.equal(sync(s.hook('nowhere.example', ctx())).code, 459);
    assert.equal(sync(s.hook('bad..x', ctx())).code, 501);
  });

  test('one runner per domain: an ETRN during a run asks for exactly one more pass', async () => {
    const { l, flushes } = lanes({ 'a.example': 1 });
    const s = new EtrnService({ domains: DOMAINS, lanes: l, clock: clock() });
    assert.equal(sync(s.hook('a.example', ctx())).code, 253);
    assert.equal(sync(s.hook('a.example', ctx())).code, 253);
    assert.equal(sync(s.hook('a.example', ctx())).code, 253);
    assert.equal(flushes.length, 1, 'no second runner');
    flushes[0]!.done();
    await new Promise((r) => setImmediate(r));
    assert.equal(flushes.length, 2, 'one more pass, not two');
    flushes[1]!.done();
    await s.idle();
    assert.equal(flushes.length, 2);
    assert.equal(s.passes, 2);
    assert.equal(s.running, 0);
  });

  test('the global cap refuses new lanes with 458 while others run', async () => {
    const { l, flushes } = lanes({ 'a.example': 1, 'b.example': 1, 'branch.example': 1 });
    const s = new EtrnService({ domains: DOMAINS, lanes: l, clock: clock(), maxConcurrent: 2 });
    assert.equal(sync(s.hook('a.example', ctx())).code, 253);
    assert.equal(sync(s.hook('b.example', ctx())).code, 253);
    assert.deepEqual(sync(s.hook('branch.example', ctx())), {
      code: 458,
      enhanced: '4.3.0',
      text: 'Unable to queue messages for node branch.example',
    });
    // A running lane can still be asked for another pass.
    assert.equal(sync(s.hook('a.example', ctx())).code, 253);
    for (const f of flushes.splice(0)) f.done();
    await new Promise((r) => setImmediate(r));
    for (const f of flushes.splice(0)) f.done();
    await s.idle();
    assert.equal(sync(s.hook('branch.example', ctx())).code, 253);
  });

  test('a client over its rate limit gets 458; other clients are unaffected; the window passes', () => {
    const c = clock();
    const { l } = lanes({});
    const s = new EtrnService({
      domains: DOMAINS,
      lanes: l,
      clock: c,
      perClientLimit: 3,
      perClientWindowMs: 60_000,
    });
    for (let i = 0; i < 3; i++) assert.equal(sync(s.hook('a.example', ctx('192.0.2.7'))).code, 251);
    assert.equal(sync(s.hook('a.example', ctx('192.0.2.7'))).code, 458);
    assert.equal(sync(s.hook('a.example', ctx('192.0.2.8'))).code, 251);
    c.advance(60_000);
    assert.equal(sync(s.hook('a.example', ctx('192.0.2.7'))).code, 251);
  });

  test('a lane held by an ATRN session is not flushed (458)', () => {
    const locks = new HeldLocks();
    assert.ok(locks.tryLock(['a.example'], 'atrn:x'));
    const { l, flushes } = lanes({ 'a.example': 1 });
    const s = new EtrnService({ domains: DOMAINS, lanes: l, clock: clock(), locks });
    assert.equal(sync(s.hook('a.example', ctx())).code, 458);
    assert.equal(flushes.length, 0);
    assert.equal(s.run('a.example'), 'refused');
  });
});

describe('rate limiter and locks', () => {
  test('a refused take is not counted', () => {
    const c = clock();
    const r = new RateLimiter(1, 1000, c);
    assert.ok(r.take('k'));
    assert.ok(!r.take('k'));
    c.advance(1000);
    assert.ok(r.take('k'));
  });

  test('locks are all-or-nothing and only the owner releases', () => {
    const l = new HeldLocks();
    assert.ok(l.tryLock(['a', 'b'], 'one'));
    assert.ok(!l.tryLock(['b', 'c'], 'two'));
    assert.ok(!l.isLocked('c'));
    l.release(['a', 'b'], 'two');
    assert.deepEqual(l.locked().sort(), ['a', 'b']);
    l.release(['a', 'b'], 'one');
    assert.deepEqual(l.locked(), []);
  });
});
