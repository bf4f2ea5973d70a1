import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { capAddresses, type DnsResolver, type MxCandidate, type MxRecord, resolveMx } from './mx.js';

function dnsError(code: string): Error {
  return Object.assign(new Error(`query ${code}`), { code });
}

/** A resolver from a table; a string value is an error code to throw. */
function fakeResolver(t: {
  mx?: Record<string, MxRecord[] | string>;
  a?: Record<string, string[] | string>;
  aaaa?: Record<string, string[] | string>;
}): DnsResolver {
  const look = <T>(table: Record<string, T | string> | undefined, k: string): Promise<T> => {
    const v = table?.[k];
    if (v === undefined) return Promise.reject(dnsError('ENOTFOUND'));
    if (typeof v === 'string') return Promise.reject(dnsError(v));
    return Promise.resolve(v);
  };
  return {
    resolveMx: (d) => look(t.mx, d),
    resolve4: (h) => look(t.a, h),
    resolve6: (h) => look(t.aaaa, h),
    resolveTxt: () => Promise.reject(dnsError('ENODATA')),
    resolvePtr: () => Promise.reject(dnsError('ENODATA')),
  };
}

/** Deterministic "random" cycling through the values. */
const seq = (...v: number[]) => {
  let i = 0;
  return () => v[i++ % v.length] ?? 0;
};

describe('resolveMx', () => {
  test('orders by preference and shuffles equal preferences with the injected random', async () => {
    const resolver = fakeResolver({
      mx: {
        'example.org': [
          { exchange: 'b.example.org', priority: 10 },
          { exchange: 'backup.example.net.', priority: 20 },
          { exchange: 'a.example.org', priority: 10 },
          { exchange: 'c.example.org', priority: 10 },
        ],
      },
    });
    const hosts = async (random: () => number) =>
      (await resolveMx('Example.ORG.', { resolver, random })).map((c) => c.host);
    const one = await hosts(seq(0));
    const two = await hosts(seq(0.99));
    assert.equal(one.at(-1), 'backup.example.net');
    assert.equal(two.at(-1), 'backup.example.net');
    assert.deepEqual(new Set(one.slice(0, 3)), new Set(['a.example.org', 'b.example.org', 'c.example.org']));
    assert.notDeepEqual(one, two);
    assert.deepEqual(await hosts(seq(0.3, 0.7)), await hosts(seq(0.3, 0.7)));
  });

  test('lists a host that appears at two preferences once, at the better one', async () => {
    const resolver = fakeResolver({
      mx: {
        'x.test': [
          { exchange: 'm.x.test', priority: 20 },
          { exchange: 'm.x.test', priority: 5 },
        ],
      },
    });
    assert.deepEqual(await resolveMx('x.test', { resolver, port: 2525 }), [
      { host: 'm.x.test', port: 2525, preference: 5 },
    ]);
  });

  test('uses the domain itself when it has no MX but has an address (implicit MX)', async () => {
    const resolver = fakeResolver({
      mx: { 'x.test': 'ENODATA' },
      a: { 'x.test': 'ENODATA' },
      aaaa: { 'x.test': ['::1'] },
    });
    assert.deepEqual(await resolveMx('x.test', { resolver }), [{ host: 'x.test', port: 25, preference: -1 }]);
  });

  test('a null MX fails permanently with 556 5.1.10', async () => {
    for (const exchange of ['', '.']) {
      const resolver = fakeResolver({ mx: { 'x.test': [{ exchange, priority: 0 }] } });
      await assert.rejects(resolveMx('x.test', { resolver }), {
        code: 'NULL_MX',
        kind: 'permanent',
        smtp: { code: 556, enhanced: '5.1.10' },
      });
    }
  });

  test('NXDOMAIN fails permanently with 550 5.1.2', async () => {
    await assert.rejects(resolveMx('nowhere.test', { resolver: fakeResolver({}) }), {
      kind: 'permanent',
      smtp: { code: 550, enhanced: '5.1.2' },
    });
  });

  test('a domain with neither MX nor addresses fails permanently', async () => {
    const resolver = fakeResolver({
      mx: { 'x.test': 'ENODATA' },
      a: { 'x.test': 'ENODATA' },
      aaaa: { 'x.test': 'ENODATA' },
    });
    await assert.rejects(resolveMx('x.test', { resolver }), { code: 'DNS_NO_MAIL_HOST', kind: 'permanent' });
  });

  test('SERVFAIL and timeouts are transient, for MX and for the implicit-MX address lookup', async () => {
    for (const code of ['ESERVFAIL', 'ETIMEOUT', 'ECONNREFUSED']) {
      await assert.rejects(resolveMx('x.test', { resolver: fakeResolver({ mx: { 'x.test': code } }) }), {
        kind: 'transient',
        smtp: { code: 451, enhanced: '4.4.3' },
      });
      const r2 = fakeResolver({
        mx: { 'x.test': 'ENODATA' },
        a: { 'x.test': code },
        aaaa: { 'x.test': 'ENODATA' },
      });
      await assert.rejects(resolveMx('x.test', { resolver: r2 }), { kind: 'transient' });
    }
  });

  test('an address literal is its own candidate, without a DNS question; a general literal fails', async () => {
    const resolver = fakeResolver({});
    const asked: string[] = [];
    const counting: DnsResolver = {
      ...resolver,
      resolveMx: (d) => {
        asked.push(d);
        return resolver.resolveMx(d);
      },
    };
    assert.deepEqual(await resolveMx('[192.0.2.1]', { resolver: counting, port: 2525 }), [
      { host: '192.0.2.1', port: 2525, preference: -1 },
    ]);
    assert.deepEqual(await resolveMx('[IPv6:2001:DB8::1]', { resolver: counting }), [
      { host: '2001:db8::1', port: 25, preference: -1 },
    ]);
    assert.deepEqual(asked, []);
    for (const bad of ['[x-tag:abc]', '[2001:db8::1]', '[IPv6:192.0.2.1]', '[999.1.1.1]'])
      await assert.rejects(resolveMx(bad, { resolver: counting }), {
        code: 'BAD_ADDRESS_LITERAL',
        kind: 'permanent',
      });
  });
});

describe('capAddresses (delivery.mx_address_limit)', () => {
  const list = (n: number): MxCandidate[] =>
    Array.from({ length: n }, (_, i) => ({ host: `192.0.2.${i + 1}`, port: 25, preference: 10 * (i + 1) }));

  test('a list longer than the limit keeps its first addresses, in order, and counts the rest', () => {
    const { tried, cut } = capAddresses(list(8), 5);
    assert.deepEqual(
      tried.map((c) => c.host),
      ['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4', '192.0.2.5'],
    );
    assert.equal(cut, 3);
  });

  test('a list as long as the limit, or shorter, is not cut', () => {
    assert.deepEqual(capAddresses(list(5), 5), { tried: list(5), cut: 0 });
    assert.deepEqual(capAddresses(list(2), 5), { tried: list(2), cut: 0 });
    assert.deepEqual(capAddresses([], 5), { tried: [], cut: 0 });
  });

  test('the cut is by address, not by host: two addresses of one MX host count twice', () => {
    const two: MxCandidate[] = [
      { host: '192.0.2.1', port: 25, preference: 10, name: 'mx1.example' },
      { host: '2001:db8::1', port: 25, preference: 10, name: 'mx1.example' },
      { host: '192.0.2.2', port: 25, preference: 20, name: 'mx2.example' },
    ];
    const { tried, cut } = capAddresses(two, 2);
    assert.deepEqual(
      tried.map((c) => c.host),
      ['192.0.2.1', '2001:db8::1'],
    );
    assert.equal(cut, 1);
  });

  test('no limit (Infinity, the default for non-MX destinations) keeps everything', () => {
    assert.deepEqual(capAddresses(list(30), Number.POSITIVE_INFINITY), { tried: list(30), cut: 0 });
  });
});
