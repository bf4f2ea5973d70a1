// The connection pool's dead-host cache and priorities, against real sockets: a host that
// refused is skipped by ordinary mail but connected to by a flush whose customer proved it up
// after the refusal; a refusal during the flush is cached for the rest of it; a probe's success
// clears the mark; and a flush's acquirers get a destination's freed slots before other mail.
// A configured host (route, ETRN host) that is this MTA — one of our listener addresses, or a
// greeting with our name — is skipped, and with nothing else it is a deferral (451 4.4.6).
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { SmtpSink } from '../../test/support/sink.js';
import { systemClock } from '../util/clock.js';
import type { MtaError } from '../errors.js';
import { ConnectionPool } from './pool.js';
import { freeTcpPort } from '../../test/support/ports.js';

function pool(perDestination = 10, isSelf?: (host: string, port: number) => boolean): ConnectionPool {
  return new ConnectionPool({
    ...(isSelf ? { isSelf } : {}),
    clientOptions: { name: 'mx.test', timeouts: { connect: 5_000 } },
    perDestination,
    global: 100,
    deadHostMs: 600_000,
    idleMs: 1_000,
    clock: systemClock,
  });
}

const tick = () => new Promise((r) => setTimeout(r, 2));

describe('connection pool', () => {
  const sinks: SmtpSink[] = [];
  after(async () => {
    for (const s of sinks) await s.close();
  });

  test('a flush connects past a dead mark older than its proof; a refusal during it is cached for the rest', async () => {
    const p = pool();
    const port = await freeTcpPort();
    const cands = async () => [{ host: '127.0.0.1', port, preference: 0 }];
    await assert.rejects(p.acquire('etrn:x', cands), /ECONNREFUSED/);
    assert.ok(p.isDead('127.0.0.1', port));
    const tries = p.stats.attempts;
    // Ordinary mail trusts the cache: no connection attempt.
    await assert.rejects(p.acquire('etrn:x', cands), /\(cached\)/);
    assert.equal(p.stats.attempts, tries);
    // The customer's host comes up and says so (an ETRN): the flush connects.
    const sink = await SmtpSink.start({ port });
    sinks.push(sink);
    await tick();
    const proof = Date.now();
    const lease = await p.acquire('etrn:x', cands, {}, { priority: true, reachableSince: proof });
    assert.equal(p.isDead('127.0.0.1', port), undefined, 'a connection that worked clears the mark');
    lease.release(false);
    // The host drops during the flush: one failed connection, then the rest of the flush skips it.
    await sink.close();
    await assert.rejects(p.acquire('etrn:x', cands, {}, { reachableSince: proof }), /ECONNREFUSED/);
    const after1 = p.stats.attempts;
    await assert.rejects(p.acquire('etrn:x', cands, {}, { reachableSince: proof }), /\(cached\)/);
    assert.equal(p.stats.attempts, after1);
    p.close();
  });

  test('a configured host that is this MTA is skipped, by address or by its greeting; alone, a deferral 4.4.6', async () => {
    const ours = await freeTcpPort();
    const p = pool(10, (h, port) => h === '127.0.0.1' && port === ours);
    const nat = await SmtpSink.start({ greeting: '220 MX.test ESMTP logmta' });
    const good = await SmtpSink.start();
    sinks.push(nat, good);
    const at =
      (...ports: number[]) =>
      async () =>
        ports.map((port) => ({ host: '127.0.0.1', port, preference: -1 }));
    const how = { selfCheck: 'configured' } as const;
    const lease = await p.acquire('route:c.test', at(ours, nat.port, good.port), {}, how);
    assert.equal(lease.host, `127.0.0.1:${good.port}`, 'the next host of the list takes the mail');
    lease.release(false);
    const tries = p.stats.attempts;
    await assert.rejects(
      p.acquire('route:c.test', at(ours, nat.port), {}, how),
      (e: MtaError) =>
        e.code === 'ROUTE_LOOP' &&
        e.kind === 'transient' &&
        e.smtp?.code === 451 &&
        e.smtp.enhanced === '4.4.6' &&
        e.message ===
          `mail loops back to myself: 127.0.0.1:${ours} (one of our listeners), 127.0.0.1:${nat.port} (greets as mx.test, our hostname) (the [[route]] of c.test) is this MTA; deferred until the configuration is fixed`,
    );
    assert.equal(p.stats.attempts, tries + 1, 'no connection to our own listener');
    assert.equal(p.isDead('127.0.0.1', nat.port), undefined, 'ourselves is no dead host');
    // Among real failures, the loop is named in the deferral.
    const down = await freeTcpPort();
    await assert.rejects(
      p.acquire('etrn:e.test', at(down, ours), {}, how),
      (e: MtaError) =>
        e.code === 'CONNECT_FAILED' &&
        /ECONNREFUSED \S+; 127\.0\.0\.1:\d+ \(one of our listeners\) is this MTA \(a loop\): skipped$/.test(
          e.message,
        ),
    );
    // A cluster peer: nodes may share a name, so only the address counts.
    const peer = await p.acquire('cluster:n2', at(nat.port), {}, { selfCheck: 'address' });
    peer.release(false);
    await assert.rejects(p.acquire('cluster:n2', at(ours), {}, { selfCheck: 'address' }), /cluster node n2/);
    // Without a check (LMTP), nothing is skipped.
    const lmtp = await p.acquire('lmtp:x', at(nat.port));
    lmtp.release(false);
    p.close();
  });

  test('markAlive (a successful probe) clears a dead mark for everyone', async () => {
    const p = pool();
    p.markDead('127.0.0.1', 9, 'connect ECONNREFUSED');
    assert.ok(p.isDead('127.0.0.1', 9));
    p.markAlive('127.0.0.1', 9);
    assert.equal(p.isDead('127.0.0.1', 9), undefined);
  });

  test("markAllAlive (an operator's flush) forgets every dead mark; a host still down is marked again", async () => {
    const p = pool();
    const port = await freeTcpPort();
    const cands = async () => [{ host: '127.0.0.1', port, preference: 0 }];
    p.markDead('127.0.0.1', 9, 'connect ECONNREFUSED');
    await assert.rejects(p.acquire('x', cands), /ECONNREFUSED/);
    await assert.rejects(p.acquire('x', cands), /\(cached\)/);
    assert.equal(p.markAllAlive(), 2);
    assert.equal(p.isDead('127.0.0.1', 9), undefined);
    const tries = p.stats.attempts;
    await assert.rejects(p.acquire('x', cands), /ECONNREFUSED/, 'one new try');
    assert.equal(p.stats.attempts, tries + 1);
    await assert.rejects(p.acquire('x', cands), /\(cached\)/, 'then the cache again');
    assert.equal(p.markAllAlive(), 1);
    p.close();
  });

  test("a flush's acquirers get the destination's freed slots before mail that waited longer", async () => {
    const sink = await SmtpSink.start();
    sinks.push(sink);
    const p = pool(1);
    const cands = async () => [{ host: '127.0.0.1', port: sink.port, preference: 0 }];
    const holder = await p.acquire('d', cands);
    const order: string[] = [];
    const runs: Promise<void>[] = [];
    const take = (name: string, priority: boolean): void => {
      runs.push(
        p.acquire('d', cands, {}, { priority }).then(async (l) => {
          order.push(name);
          // Mail arriving while the slot is held must not jump ahead of a waiting flush.
          if (!name.startsWith('late')) take(`late-${name}`, false);
          await tick();
          l.release(true);
        }),
      );
    };
    take('new1', false);
    take('new2', false);
    await tick();
    take('flush1', true);
    take('flush2', true);
    await tick();
    holder.release(true);
    while (order.length < 8) await Promise.all(runs);
    assert.deepEqual(order, [
      'flush1',
      'flush2',
      'new1',
      'new2',
      'late-flush1',
      'late-flush2',
      'late-new1',
      'late-new2',
    ]);
    p.close();
  });

  test('stopAcquiring: waiting and later acquirers get POOL_STOPPING; a lease held goes on', async () => {
    const sink = await SmtpSink.start();
    sinks.push(sink);
    const p = pool(1);
    const cands = async () => [{ host: '127.0.0.1', port: sink.port, preference: 0 }];
    const held = await p.acquire('d', cands);
    const waiting = p.acquire('d', cands);
    await tick();
    p.stopAcquiring();
    await assert.rejects(waiting, { code: 'POOL_STOPPING' });
    await assert.rejects(p.acquire('other', cands), { code: 'POOL_STOPPING' });
    assert.ok(held.client.usable, 'the lease held before the stop is still usable');
    held.release(false);
    p.close();
  });
});
