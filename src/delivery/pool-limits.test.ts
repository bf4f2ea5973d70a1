// The pool's defences against tarpits, against real sockets: connections to one host:port are
// capped over all destinations, an acquirer waiting for that host gives its global slot back (so
// a healthy destination still connects), attempts for destinations not known to work leave a
// quarter of the global slots free, and the greeting has its own timeout after which the host
// is taken for dead and its waiters are deferred without a connection.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { SmtpSink } from '../../test/support/sink.js';
import { systemClock } from '../util/clock.js';
import { ConnectionPool } from './pool.js';
import { waitFor } from '../../test/support/wait.js';

/** Accepts and never greets; counts connections. */
async function tarpit(): Promise<{ port: number; open: () => number; close(): void }> {
  const sockets = new Set<net.Socket>();
  const s = net.createServer((c) => {
    c.on('error', () => {});
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return {
    port: (s.address() as net.AddressInfo).port,
    open: () => sockets.size,
    close() {
      for (const c of sockets) c.destroy();
      s.close();
    },
  };
}

function pool(o: { global: number; perHost: number; greetingMs: number }): ConnectionPool {
  return new ConnectionPool({
    clientOptions: { name: 'mx.test', timeouts: { connect: 5_000, greeting: o.greetingMs } },
    perDestination: 10,
    global: o.global,
    perHost: o.perHost,
    deadHostMs: 600_000,
    idleMs: 1_000,
    clock: systemClock,
  });
}

describe('connection pool limits against tarpits', () => {
  const closers: Array<() => unknown> = [];
  after(async () => {
    for (const c of closers) await c();
  });

  test('a destination waiting for a tarpit host holds no global slot: a healthy one still connects', async () => {
    const pit = await tarpit();
    const sink = await SmtpSink.start({});
    closers.push(
      () => pit.close(),
      () => sink.close(),
    );
    const p = pool({ global: 2, perHost: 1, greetingMs: 3_000 });
    const toPit = async () => [{ host: '127.0.0.1', port: pit.port, preference: -1 }];
    const toSink = async () => [{ host: '127.0.0.1', port: sink.port, preference: -1 }];
    // The healthy destination has delivered before: it is known to work.
    (await p.acquire('route:ok.test', toSink)).release(false);
    const a = p.acquire('route:a.test', toPit).catch((e: Error) => e);
    await waitFor(() => pit.open() === 1, 'the first tarpit connection');
    const b = p.acquire('route:b.test', toPit).catch((e: Error) => e);
    // b waits for the host; with global = 2, a healthy destination must still get a slot.
    const t0 = Date.now();
    const c = await p.acquire('route:ok.test', toSink);
    const ms = Date.now() - t0;
    assert.ok(ms < 2_000, `the healthy destination waited ${ms} ms`);
    assert.equal(pit.open(), 1, 'one connection to the tarpit host at a time');
    c.release(false);
    // The greeting times out: the host is dead, and b is refused from the cache, not connected.
    const [ra, rb] = await Promise.all([a, b]);
    assert.match(String(ra), /greeting/);
    assert.match(String(rb), /\(cached\)/);
    assert.equal(p.stats.attempts, 3, 'one attempt at the tarpit, two at the healthy host');
    p.close();
  });

  test('attempts for destinations not known to work leave a quarter of the global slots free', async () => {
    const pits = await Promise.all([1, 2, 3, 4, 5, 6].map(() => tarpit()));
    for (const t of pits) closers.push(() => t.close());
    const p = pool({ global: 4, perHost: 10, greetingMs: 3_000 });
    const pending = pits.map((t, i) =>
      p
        .acquire(`route:t${i}.test`, async () => [{ host: '127.0.0.1', port: t.port, preference: -1 }])
        .catch((e: Error) => e),
    );
    const open = () => pits.reduce((n, t) => n + t.open(), 0);
    await waitFor(() => open() >= 3, 'three tarpit connections');
    // Give the others every chance to connect too: they must not.
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(open(), 3, '3 of 4 slots for destinations not known to work');
    for (const t of pits) t.close();
    await Promise.all(pending);
    p.close();
  });
});
