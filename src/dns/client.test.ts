// The DNS client against a real server (unbound on loopback, test/support/dns-server.ts) and
// against scripted UDP servers for what a real one will not do on cue (silence, forged answers).
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, before, describe, test } from 'node:test';
import packet from 'dns-packet';
import { hasUnbound, startDnsServer, type TestDnsServer, txt } from '../../test/support/dns-server.js';
import { DnsClient, parseServers } from './client.js';
import { StaticResolver } from '../../test/support/static-resolver.js';
import { queryUdp } from './transport.js';
import { lookupFunction } from './types.js';
import { FakeClock } from '../../test/support/clock.js';

const skip = hasUnbound() ? false : 'unbound not installed';

const ZONES = {
  zones: ['example.org', 'nullmx.test'],
  refused: ['broken.test'],
  negativeTtl: 60,
  records: [
    'example.org. 300 IN MX 10 mx.example.org.',
    'example.org. 300 IN MX 20 mx2.example.org.',
    'mx.example.org. 30 IN A 127.0.0.1',
    'mx.example.org. 30 IN AAAA ::1',
    txt('example.org', 'v=spf1 ip4:127.0.0.1 -all'),
    txt('big.example.org', 'k'.repeat(1500)),
    'nullmx.test. 300 IN MX 0 .',
    'alias.example.org. 300 IN CNAME mx.example.org.',
    'long.example.org. 86400 IN A 127.0.0.9',
    '1.0.0.127.in-addr.arpa.example.org. 300 IN PTR mx.example.org.',
  ],
};

/** A UDP "server" on loopback that hands every query to `answer` (which may stay silent). */
async function scriptedServer(
  answer: (q: packet.DecodedPacket, reply: (p: packet.Packet) => void, raw: (b: Buffer) => void) => void,
) {
  const sock = dgram.createSocket('udp4');
  let queries = 0;
  sock.on('message', (msg, rinfo) => {
    queries++;
    const q = packet.decode(msg);
    answer(
      q,
      (p) => sock.send(packet.encode(p), rinfo.port, rinfo.address),
      (b) => sock.send(b, rinfo.port, rinfo.address),
    );
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return {
    server: { host: '127.0.0.1', port: sock.address().port },
    get queries() {
      return queries;
    },
    close: () => new Promise<void>((r) => sock.close(() => r())),
  };
}

describe('DnsClient against a real DNS server', { skip }, () => {
  let dns: TestDnsServer;
  const client = (extra: Partial<ConstructorParameters<typeof DnsClient>[0]> = {}) =>
    new DnsClient({ servers: [{ host: dns.host, port: dns.port }], timeoutMs: 2_000, ...extra });

  before(async () => {
    dns = await startDnsServer(ZONES);
  });
  after(async () => {
    await dns?.stop();
  });

  test('answers MX, A, AAAA, TXT and PTR questions in node:dns shapes', async () => {
    const c = client();
    const mx = (await c.resolveMx('Example.ORG.')).sort((a, b) => a.priority - b.priority);
    assert.deepEqual(mx, [
      { exchange: 'mx.example.org', priority: 10 },
      { exchange: 'mx2.example.org', priority: 20 },
    ]);
    assert.deepEqual(await c.resolve4('mx.example.org'), ['127.0.0.1']);
    assert.deepEqual(await c.resolve6('mx.example.org'), ['::1']);
    assert.deepEqual(await c.resolveTxt('example.org'), [['v=spf1 ip4:127.0.0.1 -all']]);
    assert.deepEqual(await c.resolvePtr('1.0.0.127.in-addr.arpa.example.org'), ['mx.example.org']);
  });

  test('a Null MX comes back as one MX with an empty exchange', async () => {
    assert.deepEqual(await client().resolveMx('nullmx.test'), [{ exchange: '', priority: 0 }]);
  });

  test('NXDOMAIN is a permanent ENOTFOUND and a name without that type a permanent ENODATA', async () => {
    const c = client();
    await assert.rejects(c.resolve4('nope.example.org'), { code: 'ENOTFOUND', kind: 'permanent' });
    await assert.rejects(c.resolve6('example.org'), { code: 'ENODATA', kind: 'permanent' });
  });

  test('REFUSED is a transient EREFUSED', async () => {
    await assert.rejects(client().resolve4('x.broken.test'), { code: 'EREFUSED', kind: 'transient' });
    await assert.rejects(client().resolveTxt('anything.else'), { code: 'EREFUSED', kind: 'transient' });
  });

  test('a TXT record larger than a UDP answer may be is fetched again over TCP', async () => {
    const udp = await queryUdp({ host: dns.host, port: dns.port }, 'big.example.org', 'TXT', 2_000);
    assert.equal(udp.flag_tc, true, 'the UDP answer is truncated');
    const r = await client().resolveTxt('big.example.org');
    assert.equal(r.length, 1);
    assert.equal(r[0]?.join(''), 'k'.repeat(1500));
  });

  test('a CNAME whose target the server did not include is followed', async () => {
    assert.deepEqual(await client().resolve4('alias.example.org'), ['127.0.0.1']);
  });

  test('the lookup function answers in the shape mailauth expects', async () => {
    const look = lookupFunction(client());
    assert.deepEqual(await look('example.org', 'TXT'), [['v=spf1 ip4:127.0.0.1 -all']]);
    await assert.rejects(look('example.org', 'SRV'), { code: 'ENOTIMP' });
  });

  test('an answer is served from the cache until its TTL runs out, then asked again', async () => {
    const clock = new FakeClock();
    const c = client({ clock });
    assert.deepEqual(await c.resolve4('mx.example.org'), ['127.0.0.1']);
    await dns.update({
      ...ZONES,
      records: [
        ...ZONES.records.filter((r) => !r.startsWith('mx.example.org. 30 IN A ')),
        'mx.example.org. 30 IN A 127.0.0.2',
      ],
    });
    try {
      clock.advance(29_000);
      assert.deepEqual(await c.resolve4('mx.example.org'), ['127.0.0.1'], 'within the TTL: cached');
      clock.advance(2_000);
      assert.deepEqual(await c.resolve4('mx.example.org'), ['127.0.0.2'], 'after the TTL: asked again');
    } finally {
      await dns.update(ZONES);
    }
  });

  test('a negative answer is cached for the SOA minimum, then asked again', async () => {
    const clock = new FakeClock();
    const c = client({ clock });
    await assert.rejects(c.resolve4('later.example.org'), { code: 'ENOTFOUND' });
    await dns.update({ ...ZONES, records: [...ZONES.records, 'later.example.org. 300 IN A 127.0.0.3'] });
    try {
      clock.advance(59_000);
      await assert.rejects(c.resolve4('later.example.org'), { code: 'ENOTFOUND' });
      clock.advance(2_000);
      assert.deepEqual(await c.resolve4('later.example.org'), ['127.0.0.3']);
    } finally {
      await dns.update(ZONES);
    }
  });

  test('a TTL longer than max_ttl is cut to max_ttl, and cache_size = 0 caches nothing', async () => {
    const clock = new FakeClock();
    const c = client({ clock, maxTtlMs: 10_000 });
    await c.resolve4('long.example.org');
    clock.advance(9_000);
    await c.resolve4('long.example.org');
    assert.equal(c.stats.exchanges, 1);
    clock.advance(2_000);
    await c.resolve4('long.example.org');
    assert.equal(c.stats.exchanges, 2);
    const none = client({ cacheSize: 0 });
    await none.resolve4('long.example.org');
    await none.resolve4('long.example.org');
    assert.equal(none.stats.exchanges, 2);
  });

  test('identical lookups in flight share one exchange', async () => {
    const c = client();
    const all = await Promise.all([1, 2, 3, 4].map(() => c.resolveMx('example.org')));
    assert.equal(all.length, 4);
    assert.equal(c.stats.exchanges, 1);
  });

  test('a server that refuses the connection is skipped for the next one in the list', async () => {
    const dead = dgram.createSocket('udp4');
    await new Promise<void>((r) => dead.bind(0, '127.0.0.1', () => r()));
    const deadPort = dead.address().port;
    await new Promise<void>((r) => dead.close(() => r())); // now nothing listens: ICMP port unreachable
    const c = new DnsClient({
      servers: [
        { host: '127.0.0.1', port: deadPort },
        { host: dns.host, port: dns.port },
      ],
      timeoutMs: 2_000,
    });
    assert.deepEqual(await c.resolve4('mx.example.org'), ['127.0.0.1']);
  });
});

describe('DnsClient against scripted servers', () => {
  test('a server that never answers fails the lookup with ETIMEOUT after attempts x timeout', async () => {
    const silent = await scriptedServer(() => {});
    try {
      const c = new DnsClient({ servers: [silent.server], timeoutMs: 150, attempts: 2 });
      const t0 = Date.now();
      await assert.rejects(c.resolve4('example.org'), { code: 'ETIMEOUT', kind: 'transient' });
      assert.ok(Date.now() - t0 >= 290, 'both attempts waited');
      assert.equal(silent.queries, 2);
    } finally {
      await silent.close();
    }
  });

  test('an answer with the wrong id or question is ignored; the real one is taken', async () => {
    const s = await scriptedServer((q, reply) => {
      const base = { type: 'response' as const, flags: packet.RECURSION_AVAILABLE, questions: q.questions };
      reply({
        ...base,
        id: ((q.id ?? 0) + 1) & 0xffff,
        answers: [{ type: 'A', name: 'example.org', ttl: 60, data: '10.6.6.6' }],
      });
      reply({
        ...base,
        id: q.id,
        questions: [{ type: 'A', name: 'evil.test' }],
        answers: [{ type: 'A', name: 'evil.test', ttl: 60, data: '10.6.6.7' }],
      });
      reply({ ...base, id: q.id, answers: [{ type: 'A', name: 'example.org', ttl: 60, data: '127.0.0.5' }] });
    });
    try {
      const c = new DnsClient({ servers: [s.server], timeoutMs: 2_000 });
      assert.deepEqual(await c.resolve4('example.org'), ['127.0.0.5']);
    } finally {
      await s.close();
    }
  });

  test('datagrams that are not DNS are ignored while the answer is awaited', async () => {
    const s = await scriptedServer((q, reply, raw) => {
      raw(Buffer.from('this is not a DNS message'));
      raw(Buffer.alloc(3));
      reply({
        type: 'response',
        id: q.id,
        flags: packet.RECURSION_AVAILABLE,
        questions: q.questions,
        answers: [{ type: 'A', name: 'example.org', ttl: 5, data: '127.0.0.8' }],
      });
    });
    try {
      const c = new DnsClient({ servers: [s.server], timeoutMs: 2_000 });
      assert.deepEqual(await c.resolve4('example.org'), ['127.0.0.8']);
    } finally {
      await s.close();
    }
  });

  test('SERVFAIL is transient and is not cached', async () => {
    const s = await scriptedServer((q, reply) =>
      reply({ type: 'response', id: q.id, flags: 2 /* SERVFAIL */, questions: q.questions }),
    );
    try {
      const c = new DnsClient({ servers: [s.server], timeoutMs: 2_000, attempts: 1 });
      await assert.rejects(c.resolveTxt('example.org'), { code: 'ESERVFAIL', kind: 'transient' });
      await assert.rejects(c.resolveTxt('example.org'), { code: 'ESERVFAIL' });
      assert.equal(s.queries, 2);
    } finally {
      await s.close();
    }
  });

  test('a name that is not a domain name is refused without a query', async () => {
    const c = new DnsClient({ servers: [{ host: '127.0.0.1', port: 9 }] });
    for (const bad of ['', '.', 'a..b', `${'x'.repeat(64)}.test`]) {
      await assert.rejects(c.resolve4(bad), { code: 'EBADNAME', kind: 'permanent' });
    }
    assert.equal(c.stats.exchanges, 0);
  });
});

describe('system nameservers', () => {
  test('node:dns server strings become host and port, 53 by default', () => {
    assert.deepEqual(parseServers(['10.0.0.1', '10.0.0.2:5353', '::1', '[::1]:5300', '[fe80::1]']), [
      { host: '10.0.0.1', port: 53 },
      { host: '10.0.0.2', port: 5353 },
      { host: '::1', port: 53 },
      { host: '::1', port: 5300 },
      { host: 'fe80::1', port: 53 },
    ]);
  });
});

describe('StaticResolver', () => {
  test('answers from its table like a DNS client: ENOTFOUND, ENODATA, given errors', async () => {
    const r = new StaticResolver({
      'a.test': { A: ['127.0.0.1'], TXT: ['v=spf1 -all', ['two ', 'parts']] },
      'down.test': 'ESERVFAIL',
    });
    assert.deepEqual(await r.resolve4('A.test.'), ['127.0.0.1']);
    assert.deepEqual(await r.resolveTxt('a.test'), [['v=spf1 -all'], ['two ', 'parts']]);
    await assert.rejects(r.resolveMx('a.test'), { code: 'ENODATA' });
    await assert.rejects(r.resolveMx('b.test'), { code: 'ENOTFOUND' });
    await assert.rejects(r.resolve4('down.test'), { code: 'ESERVFAIL', kind: 'transient' });
    assert.deepEqual(r.queries.slice(0, 2), ['A a.test', 'TXT a.test']);
  });
});
