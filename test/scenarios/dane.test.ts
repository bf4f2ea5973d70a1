// DANE (RFC 7672) as a receiving domain that signs its zone meets logmta serve: NSD serves
// dst.test signed (ldns-signzone) and plain.test unsigned, unbound on loopback validates with a
// trust anchor for dst.test (test/support/dnssec-server.ts) and is the daemon's [dns] server,
// and the MX hosts are sinks on 127.x.y.z:25 with STARTTLS certificates that TLSA records at
// _25._tcp.mx<i>.dst.test name (DANE-EE 3 1 1 of the leaf, DANE-TA 2 0 1 of the CA).
// Matching TLSA: delivered over TLS exactly once; not matching, STARTTLS stripped, or a bogus
// TLSA signature: deferred with 4.7.5 and a DANE text naming the host, nothing sent in clear,
// delivered once the record is fixed; the next MX is tried; an unsigned zone is delivered as
// today; DANE wins over an MTA-STS policy where it applies.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { associationData } from '../../src/delivery/dane/tlsa.js';
import { txt } from '../support/dns-server.js';
import {
  type DnssecServer,
  dnssecSkip,
  type SignedZone,
  startDnssecServer,
} from '../support/dnssec-server.js';
import { sendMail } from '../support/inject.js';
import { mxSink } from '../support/mx-hosts.js';
import { startPolicyServer, stsPolicy } from '../support/mta-sts-server.js';
import type { SinkOptions, SmtpSink } from '../support/sink.js';
import { makeTestCa, type TestCa } from '../support/test-ca.js';
import { reservePort, type Stage } from './kit.js';
import { mxScenes, nthOutcome, outcomes } from './mx-kit.js';

const mx = mxScenes();
const skip = (await mx.skip) || dnssecSkip();

let ca: TestCa;
let dns: DnssecServer;
before(async () => {
  if (skip !== false) return;
  ca = await makeTestCa();
  dns = await startDnssecServer([]);
});
after(async () => dns?.stop());

/** An MX host on port 25 of its own address, STARTTLS with a certificate for `name` from `from`. */
async function host(
  name: string,
  opts: SinkOptions = {},
  from: TestCa = ca,
  chain = false,
): Promise<SmtpSink> {
  const issued = await from.issue([name]);
  // With `chain`, the CA certificate is sent after the leaf (as DANE-TA servers must, RFC 7672 §3.2.1).
  const cert = chain ? `${issued.cert.trim()}\n${from.cert.trim()}\n` : issued.cert;
  const s = await mxSink({ starttls: true, tlsContext: { cert, key: issued.key }, ...opts });
  mx.later(() => s.close());
  return s;
}

/** The TLSA record data (hex) of a PEM certificate. */
function tlsaHex(pem: string, selector: number, matching: number): string {
  return associationData(new X509Certificate(pem), selector, matching).toString('hex');
}

/** The leaf certificate a sink presents. */
const leafOf = (s: SmtpSink): string => {
  const c = (s.opts.tlsContext as { cert: string }).cert;
  return `${c.split('-----END CERTIFICATE-----')[0]}-----END CERTIFICATE-----\n`;
};

/** TLSA records at TTL 0, so that a fixed record is seen at the next attempt. */
const tlsa = (n: number, rr: string) => `_25._tcp.mx${n}.dst.test. 0 IN TLSA ${rr}`;

/** dst.test, signed: MX records (mx<i>.dst.test) and extra records; denials not cached. */
function dst(hosts: Array<[number, string]>, extra: string[] = [], o: Partial<SignedZone> = {}): SignedZone {
  return {
    name: 'dst.test',
    records: [
      ...hosts.flatMap(([pref, addr], i) => [
        `dst.test. 300 IN MX ${pref} mx${i + 1}.dst.test.`,
        `mx${i + 1}.dst.test. 300 IN A ${addr}`,
      ]),
      ...extra,
    ],
    negativeTtl: 0,
    ...o,
  };
}

/** A relaying daemon whose resolver is the validating unbound; retries an hour away (tests flush). */
async function world(zones: SignedZone[], delivery = '', extra = '') {
  await dns.update(zones);
  return mx.world(
    { zones: [], records: [] },
    {
      dnsServers: [dns.address],
      delivery: `tls_ca_file = "ca.pem"\n${delivery}`,
      extra: `[queue]\nretry = ["1h"]\n${extra}`,
      files: { 'ca.pem': ca.cert },
    },
  );
}

function attempts(s: Stage, rcpt: string): Array<Record<string, unknown>> {
  return s.logLines().filter((l) => l.msg === 'delivery attempt' && l.rcpt === rcpt);
}

const mailCommands = (s: SmtpSink) => s.commands.filter((c) => /^(MAIL|RCPT|DATA|BDAT)/i.test(c));

async function daneCounter(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^logmta_dane_attempts_total\{result="([\w-]+)"\} (\d+)$/gm))
    out[m[1]!] = Number(m[2]);
  return out;
}

describe('DANE on MX delivery, against logmta serve with a validating resolver', { skip }, () => {
  test('validated MX and TLSA 3 1 1 of the certificate: delivered over TLS, exactly once', async () => {
    const mx1 = await host('mx1.dst.test');
    const admin = await reservePort();
    const w = await world(
      [dst([[10, mx1.host]], [tlsa(1, `3 1 1 ${tlsaHex(leafOf(mx1), 1, 1)}`)])],
      '',
      `[admin]\nlisten = "127.0.0.1:${admin}"\n`,
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.deepEqual(
      mx1.transactions.map((t) => [t.recipients, t.tls]),
      [[['u@dst.test'], true]],
    );
    const a = attempts(w.stage, 'u@dst.test')[0]!;
    assert.deepEqual([a.dane, a.daneMatch], ['verified', 'DANE-EE 1 1']);
    assert.equal(outcomes(w.stage, 'u@dst.test').length, 1);
    assert.deepEqual(await daneCounter(admin), { verified: 1 });
    assert.ok(
      w.stage.logLines().some((l) => l.msg === 'DANE' && /believed from 127\.0\.0\.1/.test(String(l.dane))),
    );
  });

  test('TLSA not matching: deferred with a DANE text, no MAIL or DATA; the record fixed and re-signed: delivered', async () => {
    const mx1 = await host('mx1.dst.test');
    const other = await makeTestCa('another CA');
    const wrong = (await other.issue(['mx1.dst.test'])).cert;
    const w = await world([dst([[10, mx1.host]], [tlsa(1, `3 1 1 ${tlsaHex(wrong, 1, 1)}`)])]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.equal(o.enhanced, '4.7.5');
    assert.match(
      String(o.text),
      /DANE \(TLSA records of _25\._tcp\.mx1\.dst\.test\): the certificate of mx1\.dst\.test does not match/,
    );
    assert.deepEqual(mailCommands(mx1), [], 'no MAIL, RCPT or DATA');
    assert.equal(mx1.connections, 1, 'no plain-text retry on a new connection');
    assert.equal(attempts(w.stage, 'u@dst.test')[0]?.dane, 'failed');

    await dns.update([dst([[10, mx1.host]], [tlsa(1, `3 1 1 ${tlsaHex(leafOf(mx1), 1, 1)}`)])]);
    await w.stage.admin('flush');
    const again = await nthOutcome(w.stage, 'u@dst.test', 2);
    assert.equal(again.msg, 'delivered', JSON.stringify(again));
    assert.deepEqual(
      mx1.transactions.map((t) => [t.recipients, t.tls]),
      [[['u@dst.test'], true]],
    );
  });

  test('STARTTLS stripped from a host with TLSA records: deferred, nothing sent in clear', async () => {
    const mx1 = await host('mx1.dst.test');
    mx1.opts.starttls = false;
    const w = await world([dst([[10, mx1.host]], [tlsa(1, `3 1 1 ${tlsaHex(leafOf(mx1), 1, 1)}`)])]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.equal(o.enhanced, '4.7.5');
    assert.match(
      String(o.text),
      /DANE \(TLSA records of _25\._tcp\.mx1\.dst\.test\): .*does not offer STARTTLS/,
    );
    assert.deepEqual(mailCommands(mx1), []);
    assert.equal(mx1.transactions.length, 0);
  });

  test('a bogus TLSA signature: the host is not tried, the mail deferred, never sent in plain text', async () => {
    const mx1 = await host('mx1.dst.test', { starttls: false });
    const w = await world([
      dst([[10, mx1.host]], [tlsa(1, `3 1 1 ${tlsaHex(leafOf(mx1), 1, 1)}`)], {
        bogus: ['_25._tcp.mx1.dst.test'],
      }),
    ]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.equal(o.enhanced, '4.7.5');
    assert.match(
      String(o.text),
      /mx1\.dst\.test\[[\d.]+\]:25 DANE: TLSA lookup of _25\._tcp\.mx1\.dst\.test failed \(ESERVFAIL\)/,
    );
    assert.equal(mx1.connections, 0);
  });

  test('the best MX fails DANE, the next one matches: delivered there (RFC 7672 §2.2)', async () => {
    const mx1 = await host('mx1.dst.test');
    const mx2 = await host('mx2.dst.test');
    const w = await world([
      dst(
        [
          [10, mx1.host],
          [20, mx2.host],
        ],
        [tlsa(1, `3 1 1 ${'00'.repeat(32)}`), tlsa(2, `3 1 1 ${tlsaHex(leafOf(mx2), 1, 1)}`)],
      ),
    ]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(mailCommands(mx1), []);
    assert.equal(mx2.transactions.length, 1);
    assert.equal(attempts(w.stage, 'u@dst.test')[0]?.dane, 'verified');
  });

  test('DANE-TA 2 0 1 of the CA, chain sent: delivered over TLS', async () => {
    const mx1 = await host('mx1.dst.test', {}, ca, true);
    const w = await world([dst([[10, mx1.host]], [tlsa(1, `2 0 1 ${tlsaHex(ca.cert, 0, 1)}`)])]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.equal(attempts(w.stage, 'u@dst.test')[0]?.daneMatch, 'DANE-TA 0 1');
    assert.deepEqual(
      mx1.transactions.map((t) => [t.recipients, t.tls]),
      [[['u@dst.test'], true]],
    );
  });

  test('DANE-TA 2 0 1 of the CA, but the certificate names another host: deferred (DANE-TA checks the name)', async () => {
    const misnamed = await host('www.dst.test', {}, ca, true);
    const w = await world([dst([[10, misnamed.host]], [tlsa(1, `2 0 1 ${tlsaHex(ca.cert, 0, 1)}`)])]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['v@dst.test'] });
    const bad = await nthOutcome(w.stage, 'v@dst.test');
    assert.equal(bad.msg, 'deferred', JSON.stringify(bad));
    assert.match(String(bad.text), /not valid for mx1\.dst\.test/);
    assert.deepEqual(mailCommands(misnamed), []);
  });

  test('TLSA records published while a plain connection is kept: the next message goes on a new, checked one', async () => {
    const mx1 = await host('mx1.dst.test');
    mx1.opts.starttls = false; // plain until it gets a certificate and TLSA records
    const w = await world([dst([[10, mx1.host]])]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.equal(attempts(w.stage, 'u@dst.test')[0]?.dane, 'no-tlsa');
    mx1.opts.starttls = true;
    await dns.update([dst([[10, mx1.host]], [tlsa(1, `3 1 1 ${tlsaHex(leafOf(mx1), 1, 1)}`)])]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['v@dst.test'] });
    const o = await nthOutcome(w.stage, 'v@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.equal(attempts(w.stage, 'v@dst.test')[0]?.dane, 'verified');
    assert.equal(mx1.connections, 2, 'the kept plain connection was not used');
    assert.deepEqual(
      mx1.transactions.map((t) => [t.recipients[0], t.tls]),
      [
        ['u@dst.test', false],
        ['v@dst.test', true],
      ],
    );
  });

  test('an unsigned zone: plain opportunistic delivery, as without DANE', async () => {
    const mx1 = await host('mx.plain.test', { starttls: false });
    const w = await world([
      {
        name: 'plain.test',
        signed: false,
        records: [
          'plain.test. 300 IN MX 10 mx.plain.test.',
          `mx.plain.test. 300 IN A ${mx1.host}`,
          `_25._tcp.mx.plain.test. 300 IN TLSA 3 1 1 ${'00'.repeat(32)}`,
        ],
      },
    ]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@plain.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@plain.test')).msg, 'delivered');
    assert.deepEqual(
      mx1.transactions.map((t) => [t.recipients, t.tls]),
      [[['u@plain.test'], false]],
    );
    assert.equal(attempts(w.stage, 'u@plain.test')[0]?.dane, 'insecure');
  });

  test('DANE goes before MTA-STS (RFC 8461 §2): a certificate no CA vouches for, matching TLSA, under enforce: delivered', async () => {
    const untrusted = await makeTestCa('a CA nobody trusts');
    const mx1 = await host('mx1.dst.test', {}, untrusted);
    const p = await startPolicyServer('dst.test', ca, stsPolicy('enforce', ['mx1.dst.test']));
    mx.later(() => p.close());
    const w = await world([
      dst(
        [[10, mx1.host]],
        [
          tlsa(1, `3 1 1 ${tlsaHex(leafOf(mx1), 1, 1)}`),
          txt('_mta-sts.dst.test', 'v=STSv1; id=1;', 1),
          `mta-sts.dst.test. 300 IN A ${p.host}`,
        ],
      ),
    ]);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    const a = attempts(w.stage, 'u@dst.test')[0]!;
    assert.deepEqual([a.dane, a.mtaSts, a.mtaStsFailure], ['verified', 'enforce', undefined]);
  });

  test('delivery.dane = false: TLSA records are not looked at', async () => {
    const mx1 = await host('mx1.dst.test', { starttls: false });
    const w = await world([dst([[10, mx1.host]], [tlsa(1, `3 1 1 ${'00'.repeat(32)}`)])], 'dane = false');
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.equal(attempts(w.stage, 'u@dst.test')[0]?.dane, undefined);
  });
});
