// DNSSEC in the DNS client: whose AD bit is believed ([dns] dnssec), what a question asks for,
// and how "validated" is carried with answers, denials and CNAME chains. Exchanges are scripted
// (the real validating resolver is test/scenarios/dane.test.ts's).
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { describe, test } from 'node:test';
import packet from 'dns-packet';
import { DnsClient, type DnssecTrust, trustsAd } from './client.js';
import type { DnsServer } from './transport.js';
import type { LookupType } from './types.js';

type Answer = { ad: boolean; rcode?: string; answers?: packet.Answer[]; soa?: boolean };

/** A client whose exchanges answer from `table` ("TYPE name" → answer) and are recorded. */
function scripted(server: DnsServer, trust: DnssecTrust, table: Record<string, Answer>) {
  const calls: Array<{ server: string; q: string; dnssec: boolean }> = [];
  const client = new DnsClient({
    servers: [server],
    dnssec: trust,
    cacheSize: 0,
    exchange: async (s: DnsServer, name: string, type: LookupType, _t: number, dnssec?: boolean) => {
      calls.push({ server: s.host, q: `${type} ${name}`, dnssec: dnssec === true });
      const a = table[`${type} ${name}`] ?? { ad: false, rcode: 'NXDOMAIN', soa: true };
      return {
        id: 1,
        type: 'response',
        flags: 0,
        flag_ad: a.ad,
        rcode: a.rcode ?? 'NOERROR',
        questions: [{ name, type, class: 'IN' }],
        answers: a.answers ?? [],
        authorities: a.soa
          ? [
              {
                name: 'test',
                type: 'SOA',
                ttl: 60,
                data: {
                  mname: 'ns.test',
                  rname: 'h.test',
                  serial: 1,
                  refresh: 1,
                  retry: 1,
                  expire: 1,
                  minimum: 60,
                },
              },
            ]
          : [],
      } as unknown as packet.DecodedPacket;
    },
  });
  return { client, calls };
}

const LOOP = { host: '127.0.0.1', port: 53 };
const REMOTE = { host: '192.0.2.53', port: 53 };
const mxAnswer: Answer = {
  ad: true,
  answers: [{ name: 'dst.test', type: 'MX', ttl: 300, data: { preference: 10, exchange: 'mx1.dst.test' } }],
};

describe('whose AD bit is believed', () => {
  test('loopback servers only by default; any with "always"; none with "never"', () => {
    for (const h of ['127.0.0.1', '127.0.0.53', '::1'])
      assert.equal(trustsAd({ host: h, port: 53 }, 'loopback'), true, h);
    for (const h of ['192.0.2.53', '10.0.0.1', '2001:db8::1', '128.0.0.1'])
      assert.equal(trustsAd({ host: h, port: 53 }, 'loopback'), false, h);
    assert.equal(trustsAd(REMOTE, 'always'), true);
    assert.equal(trustsAd(LOOP, 'never'), false);
  });

  test('a loopback validating resolver: the question asks for DNSSEC, AD makes the answer secure', async () => {
    const { client, calls } = scripted(LOOP, 'loopback', { 'MX dst.test': mxAnswer });
    const a = await client.resolveSecure('dst.test', 'MX');
    assert.deepEqual(a, { records: [{ exchange: 'mx1.dst.test', priority: 10 }], secure: true });
    assert.deepEqual(calls, [{ server: '127.0.0.1', q: 'MX dst.test', dnssec: true }]);
    assert.equal(client.validating, true);
  });

  test('the same AD bit from a remote resolver counts for nothing, and is not asked for', async () => {
    const { client, calls } = scripted(REMOTE, 'loopback', { 'MX dst.test': mxAnswer });
    assert.equal((await client.resolveSecure('dst.test', 'MX')).secure, false);
    assert.equal(calls[0]?.dnssec, false);
    assert.equal(client.validating, false);
    const always = scripted(REMOTE, 'always', { 'MX dst.test': mxAnswer });
    assert.equal((await always.client.resolveSecure('dst.test', 'MX')).secure, true);
    const never = scripted(LOOP, 'never', { 'MX dst.test': mxAnswer });
    assert.equal((await never.client.resolveSecure('dst.test', 'MX')).secure, false);
    assert.equal(never.calls[0]?.dnssec, false);
  });

  test('no AD bit: not secure; plain lookups answer as before', async () => {
    const { client } = scripted(LOOP, 'loopback', { 'MX dst.test': { ...mxAnswer, ad: false } });
    assert.equal((await client.resolveSecure('dst.test', 'MX')).secure, false);
    assert.deepEqual(await client.resolveMx('dst.test'), [{ exchange: 'mx1.dst.test', priority: 10 }]);
  });
});

describe('validated answers', () => {
  test('a denial resolves with its code and whether it was validated', async () => {
    const { client } = scripted(LOOP, 'loopback', {
      'TLSA _25._tcp.mx1.dst.test': { ad: true, soa: true },
      'TLSA _25._tcp.mx2.dst.test': { ad: true, rcode: 'NXDOMAIN', soa: true },
    });
    assert.deepEqual(await client.resolveSecure('_25._tcp.mx1.dst.test', 'TLSA'), {
      records: [],
      secure: true,
      code: 'ENODATA',
    });
    assert.deepEqual(await client.resolveSecure('_25._tcp.mx2.dst.test', 'TLSA'), {
      records: [],
      secure: true,
      code: 'ENOTFOUND',
    });
  });

  test('SERVFAIL (what a validator answers for a bogus signature) rejects', async () => {
    const { client } = scripted(LOOP, 'loopback', {
      'TLSA _25._tcp.mx1.dst.test': { ad: false, rcode: 'SERVFAIL' },
    });
    await assert.rejects(client.resolveSecure('_25._tcp.mx1.dst.test', 'TLSA'), { code: 'ESERVFAIL' });
  });

  test('a CNAME chain is secure only if every part was, and says where it led', async () => {
    const alias: Answer = {
      ad: true,
      answers: [{ name: 'mx.dst.test', type: 'CNAME', ttl: 300, data: 'mail.hoster.test' }],
    };
    const target = (ad: boolean): Answer => ({
      ad,
      answers: [{ name: 'mail.hoster.test', type: 'A', ttl: 300, data: '127.0.0.9' }],
    });
    const both = scripted(LOOP, 'loopback', { 'A mx.dst.test': alias, 'A mail.hoster.test': target(true) });
    assert.deepEqual(await both.client.resolveSecure('mx.dst.test', 'A'), {
      records: ['127.0.0.9'],
      secure: true,
      canonical: 'mail.hoster.test',
    });
    const half = scripted(LOOP, 'loopback', { 'A mx.dst.test': alias, 'A mail.hoster.test': target(false) });
    assert.equal((await half.client.resolveSecure('mx.dst.test', 'A')).secure, false);
  });
});

describe('the question on the wire', () => {
  test('with DNSSEC: DO and AD set; TLSA answers decode to usage, selector, matching, data', async () => {
    const sock = dgram.createSocket('udp4');
    const seen: Array<{ ad: boolean; do: boolean }> = [];
    const data = Buffer.alloc(32, 7);
    sock.on('message', (msg, r) => {
      const q = packet.decode(msg);
      const opt = (q.additionals ?? []).find((a) => a.type === 'OPT') as { flag_do?: boolean } | undefined;
      seen.push({ ad: q.flag_ad === true, do: opt?.flag_do === true });
      const reply = packet.encode({
        id: q.id,
        type: 'response',
        flags: packet.AUTHENTIC_DATA | packet.RECURSION_AVAILABLE,
        questions: q.questions,
        answers: [
          {
            name: '_25._tcp.mx1.dst.test',
            type: 'TLSA',
            ttl: 60,
            data: { usage: 3, selector: 1, matchingType: 1, certificate: data },
          } as packet.Answer,
        ],
      });
      sock.send(reply, r.port, r.address);
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    try {
      const server = { host: '127.0.0.1', port: sock.address().port };
      const on = new DnsClient({ servers: [server], dnssec: 'loopback', cacheSize: 0 });
      const a = await on.resolveSecure('_25._tcp.mx1.dst.test', 'TLSA');
      assert.deepEqual(a, { records: [{ usage: 3, selector: 1, matching: 1, data }], secure: true });
      const off = new DnsClient({ servers: [server], cacheSize: 0 });
      assert.equal((await off.resolveSecure('_25._tcp.mx1.dst.test', 'TLSA')).secure, false);
      assert.deepEqual(seen, [
        { ad: true, do: true },
        { ad: false, do: false },
      ]);
    } finally {
      await new Promise<void>((r) => sock.close(() => r()));
    }
  });
});
