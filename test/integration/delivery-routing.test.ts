// Routing and the connection pool end to end: MX routing through an injected resolver (preference
// order, address lookup, Null MX, NXDOMAIN, SERVFAIL), static routes with several hosts, and the
// dead-destination cache (N queued messages for a host that accepts and drops connections cost one
// connection attempt per interval, not N).
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, test } from 'node:test';
import type { DnsResolver, MxRecord } from '../../src/delivery/mx.js';
import { SmtpSink } from '../support/sink.js';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';
import { sleep, waitFor } from '../support/wait.js';
import { startRelayDaemon, type TestDaemon } from '../support/daemon.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function sinkFor(opts: Parameters<typeof SmtpSink.start>[0] = {}): Promise<SmtpSink> {
  const s = await SmtpSink.start(opts);
  cleanups.push(() => s.close());
  return s;
}

async function daemon(toml: string, deps: Parameters<typeof startRelayDaemon>[1] = {}): Promise<TestDaemon> {
  const d = await startRelayDaemon(toml, deps);
  cleanups.push(() => d.stop());
  return d;
}

/** A TCP listener that accepts and at once closes every connection, counting them. */
async function blackHole(): Promise<{ port: number; accepted: () => number }> {
  let n = 0;
  const server = net.createServer((s) => {
    n++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, accepted: () => n };
}

function dnsError(code: string): Error {
  return Object.assign(new Error(`query failed: ${code}`), { code });
}

/** A resolver from a table: MX records and A records; anything else is NXDOMAIN. */
function fakeResolver(t: {
  mx?: Record<string, MxRecord[] | string>;
  a?: Record<string, string[] | string>;
}): DnsResolver & { queries: string[] } {
  const queries: string[] = [];
  const answer = <T>(v: T[] | string | undefined, fallback: string): Promise<T[]> => {
    if (v === undefined) return Promise.reject(dnsError(fallback));
    if (typeof v === 'string') return Promise.reject(dnsError(v));
    return Promise.resolve(v);
  };
  return {
    queries,
    resolveMx: (d) => {
      queries.push(`MX ${d}`);
      return answer(t.mx?.[d], t.a?.[d] ? 'ENODATA' : 'ENOTFOUND');
    },
    resolve4: (h) => {
      queries.push(`A ${h}`);
      return answer(t.a?.[h], 'ENOTFOUND');
    },
    resolve6: (h) => {
      queries.push(`AAAA ${h}`);
      return answer(undefined, t.a?.[h] ? 'ENODATA' : 'ENOTFOUND');
    },
    resolveTxt: () => answer(undefined, 'ENODATA'),
    resolvePtr: () => answer(undefined, 'ENODATA'),
  };
}

const bounceRoute = (sink: SmtpSink) => `[[route]]\ndomain = "src.test"\nhost = "127.0.0.1:${sink.port}"\n`;
const reports = (sink: SmtpSink) => sink.transactions.filter((t) => t.sender === '');

describe('MX routing through the injected resolver', () => {
  test('mail goes to the best-preference MX host, looked up to an address through the resolver', async () => {
    const good = await sinkFor();
    const resolver = fakeResolver({
      mx: {
        'dst.test': [
          { exchange: 'mx2.dst.test', priority: 20 },
          { exchange: 'mx1.dst.test', priority: 10 },
        ],
      },
      a: { 'mx1.dst.test': ['127.0.0.1'], 'mx2.dst.test': ['127.0.0.2'] },
    });
    const d = await daemon('[queue]\nretry = ["1s"]\n', { resolver, mxPort: good.port });
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test', 'v@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 5000);
    assert.equal(good.transactions.length, 1);
    assert.deepEqual(good.transactions[0]!.recipients, ['u@dst.test', 'v@dst.test']);
    assert.ok(resolver.queries.includes('MX dst.test') && resolver.queries.includes('A mx1.dst.test'));
    assert.equal(d.outcomes('u@dst.test')[0]!.fields.relay, `mx1.dst.test[127.0.0.1]:${good.port}`);
  });

  test('an MX host that is down is skipped for the next preference', async () => {
    const good = await sinkFor();
    // 127.0.0.3 has nothing listening on the sink's port: connection refused.
    const resolver = fakeResolver({
      mx: {
        'dst.test': [
          { exchange: 'down.dst.test', priority: 5 },
          { exchange: 'up.dst.test', priority: 10 },
        ],
      },
      a: { 'down.dst.test': ['127.0.0.3'], 'up.dst.test': ['127.0.0.1'] },
    });
    const d = await daemon('', { resolver, mxPort: good.port });
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 5000);
    assert.equal(good.transactions.length, 1);
    assert.ok(d.daemon.pool.isDead('127.0.0.3', good.port), 'the dead host is remembered');
  });

  test('Null MX fails at once with 556 5.1.10 and bounces', async () => {
    const sink = await sinkFor();
    const resolver = fakeResolver({ mx: { 'nomail.test': [{ exchange: '', priority: 0 }] } });
    const d = await daemon(bounceRoute(sink), { resolver, mxPort: 1 });
    await sendMail(d.port, { from: 'a@src.test', to: ['u@nomail.test'] });
    await waitFor(() => reports(sink).length === 1 && d.settled(), 'the bounce', 5000);
    assert.equal(d.outcomes('u@nomail.test')[0]!.fields.code, 556);
    const r = parseDsn(reports(sink)[0]!.data).recipients[0]!;
    assert.equal(r.action, 'failed');
    assert.equal(r.status, '5.1.10');
    assert.match(r['diagnostic-code'] ?? '', /556 5\.1\.10 .*null MX/);
    assert.equal(d.daemon.pool.stats.attempts, 1, 'only the bounce connected anywhere');
  });

  test('NXDOMAIN fails permanently (5.1.2); SERVFAIL defers', async () => {
    const sink = await sinkFor();
    const resolver = fakeResolver({ mx: { 'broken.test': 'ESERVFAIL' } });
    const d = await daemon(`[queue]\nretry = ["1s"]\n${bounceRoute(sink)}`, { resolver, mxPort: 1 });
    await sendMail(d.port, { from: 'a@src.test', to: ['u@nowhere.test', 'v@broken.test'] });
    // The bounce is done once its delivery is recorded, not when the sink has it: until then it
    // is still queued too.
    await waitFor(
      () =>
        reports(sink).length === 1 &&
        d.outcomes('a@src.test').some((o) => o.msg === 'delivered') &&
        d.outcomes('v@broken.test').length >= 1,
      'outcomes',
      15_000,
    );
    assert.equal(d.outcomes('u@nowhere.test')[0]!.msg, 'failed');
    const r = parseDsn(reports(sink)[0]!.data).recipients[0]!;
    assert.equal(r['final-recipient'], 'rfc822; u@nowhere.test');
    assert.equal(r.status, '5.1.2');
    const v = d.outcomes('v@broken.test')[0]!;
    assert.equal(v.msg, 'deferred');
    assert.equal(v.fields.code, 451);
    assert.equal(d.liveMessages(), 1, 'the deferred recipient is still queued');
  });

  test('an MX host without an address is a permanent failure (5.4.4)', async () => {
    const sink = await sinkFor();
    const resolver = fakeResolver({ mx: { 'dst.test': [{ exchange: 'ghost.dst.test', priority: 10 }] } });
    const d = await daemon(bounceRoute(sink), { resolver, mxPort: 1 });
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => reports(sink).length === 1, 'the bounce', 5000);
    assert.equal(parseDsn(reports(sink)[0]!.data).recipients[0]!.status, '5.4.4');
  });
});

describe('static routes and the dead-destination cache', () => {
  test('route hosts are tried in order: the first refuses, the second takes the mail', async () => {
    const hole = await blackHole();
    const sink = await sinkFor();
    const d = await daemon(
      `[[route]]\ndomain = "*"\nhost = ["127.0.0.1:${hole.port}", "127.0.0.1:${sink.port}"]\n`,
    );
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 5000);
    assert.equal(hole.accepted(), 1);
    assert.equal(sink.transactions.length, 1);
  });

  test('N messages for a host that drops connections cost one attempt per dead-host interval', async () => {
    const hole = await blackHole();
    const d = await daemon(
      `[queue]\nretry = ["300ms"]\n[[route]]\ndomain = "*"\nhost = "127.0.0.1:${hole.port}"\n`,
      {
        deadHostMs: 1500,
      },
    );
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => sendMail(d.port, { from: 'a@src.test', to: [`u${i}@dst.test`] })),
    );
    await waitFor(
      () => d.outcomes().filter((o) => o.msg === 'deferred').length >= 30,
      'three rounds of deferrals',
      30_000,
    );
    const elapsed = Date.now() - t0;
    const deferrals = d.outcomes().filter((o) => o.msg === 'deferred').length;
    // Every deferral after the first attempt came from the cache.
    assert.ok(
      hole.accepted() <= 1 + Math.floor(elapsed / 1500),
      `attempts ${hole.accepted()} in ${elapsed} ms`,
    );
    assert.ok(d.daemon.pool.stats.deadSkips >= deferrals - hole.accepted());
    assert.ok(d.outcomes().some((o) => /\(cached\)/.test(String(o.fields.text))));
    // After the interval the host is tried again (once).
    const before = hole.accepted();
    await sleep(1700);
    await waitFor(() => hole.accepted() > before, 'a new attempt after the interval', 15_000);
    const again = Date.now();
    await sleep(200);
    // One attempt, not one per waiting message (a herd when the mark runs out); a second one
    // only if the loaded machine let another whole interval pass meanwhile.
    const intervals = Math.floor((Date.now() - again) / 1500);
    assert.ok(
      hole.accepted() <= before + 1 + intervals,
      `${hole.accepted() - before} attempts after the interval (${intervals} more intervals passed)`,
    );
    assert.equal(d.liveMessages(), 10, 'nothing was lost or bounced');
  });
});
