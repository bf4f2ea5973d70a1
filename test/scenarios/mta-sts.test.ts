// MTA-STS (RFC 8461) as a receiving domain that publishes a policy meets logmta serve (mx-kit.ts):
// unbound serves _mta-sts.dst.test TXT and the addresses of mta-sts.dst.test and the MX hosts
// (each on 127.x.y.z), a node:https policy server holds the policy, and the MX hosts are sinks
// with STARTTLS certificates from the test's CA, which the daemon trusts (delivery.tls_ca_file).
// enforce: delivered over verified TLS to MX hosts the policy names, deferred — never sent in
// plain text — when TLS or the certificate is missing, delivered on the retry once the MX is
// fixed; testing: delivered as without a policy, with a log line; the policy cached in data_dir
// still enforced after a restart with the policy server down.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { DnsZones } from '../support/dns-server.js';
import { txt } from '../support/dns-server.js';
import { sendMail } from '../support/inject.js';
import { mxSink } from '../support/mx-hosts.js';
import { type PolicyServer, startPolicyServer, stsPolicy } from '../support/mta-sts-server.js';
import type { SinkOptions, SmtpSink } from '../support/sink.js';
import { makeTestCa, type TestCa } from '../support/test-ca.js';
import { waitFor } from '../support/wait.js';
import { reservePort, type Stage } from './kit.js';
import { mxScenes, mxZone, nthOutcome, outcomes } from './mx-kit.js';

const mx = mxScenes();
const skip = await mx.skip;

let ca: TestCa;
before(async () => {
  if (skip === false) ca = await makeTestCa();
});

/** An MX host of dst.test on port 25 of its own address, STARTTLS with a certificate for `name` from the CA. */
async function host(name: string, opts: SinkOptions = {}): Promise<SmtpSink> {
  const s = await mxSink({ starttls: true, tlsContext: await ca.issue([name]), ...opts });
  mx.later(() => s.close());
  return s;
}

async function policyServer(policy: string): Promise<PolicyServer> {
  const p = await startPolicyServer('dst.test', ca, policy);
  mx.later(() => p.close());
  return p;
}

/** dst.test: MX records (named mx<i>.dst.test), the policy's TXT record and mta-sts.dst.test. */
function zone(hosts: Array<[number, string]>, policy: PolicyServer, id = '1'): DnsZones {
  return mxZone(hosts, [
    txt('_mta-sts.dst.test', `v=STSv1; id=${id};`, 1),
    `mta-sts.dst.test. 300 IN A ${policy.host}`,
  ]);
}

/** A relaying daemon trusting the CA; retries an hour away (a test moves them with a flush). */
function world(z: DnsZones, delivery = '', extra = '') {
  return mx.world(z, {
    delivery: `tls_ca_file = "ca.pem"\n${delivery}`,
    extra: `[queue]\nretry = ["1h"]\n${extra}`,
    files: { 'ca.pem': ca.cert },
  });
}

/** The MTA-STS counter's samples from the HTTP admin listener: "mode result" → value. */
async function stsCounter(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^logmta_mta_sts_attempts_total\{mode="(\w+)",result="(\w+)"\} (\d+)$/gm))
    out[`${m[1]} ${m[2]}`] = Number(m[3]);
  return out;
}

/** The "delivery attempt" log lines of a recipient. */
function attempts(s: Stage, rcpt: string): Array<Record<string, unknown>> {
  return s.logLines().filter((l) => l.msg === 'delivery attempt' && l.rcpt === rcpt);
}

const mailCommands = (s: SmtpSink) => s.commands.filter((c) => /^(MAIL|RCPT|DATA|BDAT)/i.test(c));

describe('MTA-STS on MX delivery, against logmta serve', { skip }, () => {
  test('enforce, MX with a valid certificate: delivered over TLS, exactly once', async () => {
    const mx1 = await host('mx1.dst.test');
    const p = await policyServer(stsPolicy('enforce', ['mx1.dst.test']));
    const w = await world(zone([[10, mx1.host]], p));
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.deepEqual(
      mx1.transactions.map((t) => [t.recipients, t.tls]),
      [[['u@dst.test'], true]],
    );
    const a = attempts(w.stage, 'u@dst.test')[0]!;
    assert.deepEqual([a.mtaSts, a.mtaStsId, a.mtaStsFailure], ['enforce', '1', undefined]);
    assert.equal(p.requests, 1);
    // A second message uses the cached policy: no second fetch.
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['v@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'v@dst.test')).msg, 'delivered');
    assert.equal(p.requests, 1);
    assert.equal(mx1.transactions.length, 2);
  });

  test('enforce, MX without STARTTLS: deferred and nothing sent in clear; once it offers TLS, delivered on the retry', async () => {
    const mx1 = await host('mx1.dst.test');
    mx1.opts.starttls = false; // as an attacker stripping STARTTLS from the EHLO reply
    const p = await policyServer(stsPolicy('enforce', ['mx1.dst.test']));
    const admin = await reservePort();
    const w = await world(zone([[10, mx1.host]], p), '', `[admin]\nlisten = "127.0.0.1:${admin}"\n`);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.equal(o.enhanced, '4.7.5');
    assert.match(String(o.text), /MTA-STS policy of dst\.test \(id 1\): .*does not offer STARTTLS/);
    assert.deepEqual(mailCommands(mx1), [], 'no MAIL, RCPT or DATA in plain text');
    assert.equal(mx1.transactions.length, 0);
    assert.match(String(attempts(w.stage, 'u@dst.test')[0]?.mtaStsFailure), /does not offer STARTTLS/);

    mx1.opts.starttls = true;
    await w.stage.admin('flush');
    const again = await nthOutcome(w.stage, 'u@dst.test', 2);
    assert.equal(again.msg, 'delivered', JSON.stringify(again));
    assert.deepEqual(
      mx1.transactions.map((t) => [t.recipients, t.tls]),
      [[['u@dst.test'], true]],
    );
    assert.deepEqual(await stsCounter(admin), { 'enforce failed': 1, 'enforce ok': 1 });
  });

  test('enforce, MX whose certificate is not from a trusted CA: deferred, nothing sent', async () => {
    const other = await makeTestCa('an untrusted CA');
    const mx1 = await mxSink({ starttls: true, tlsContext: await other.issue(['mx1.dst.test']) });
    mx.later(() => mx1.close());
    const p = await policyServer(stsPolicy('enforce', ['mx1.dst.test']));
    const w = await world(zone([[10, mx1.host]], p));
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.match(String(o.text), /MTA-STS policy of dst\.test.*certificate/i);
    assert.deepEqual(mailCommands(mx1), []);
    assert.equal(mx1.connections, 1, 'no plain-text retry on a new connection');
  });

  test('enforce, best MX not named by the policy: skipped, the mail goes to the one it names', async () => {
    const rogue = await host('mx1.dst.test');
    const good = await host('mx2.dst.test');
    const p = await policyServer(stsPolicy('enforce', ['*.mail.dst.test', 'mx2.dst.test']));
    const w = await world(
      zone(
        [
          [10, rogue.host],
          [20, good.host],
        ],
        p,
      ),
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.equal(rogue.connections, 0, 'the MX outside the policy got no connection');
    assert.equal(good.transactions.length, 1);
  });

  test('enforce, no MX named by the policy: deferred with the reason, no connection', async () => {
    const rogue = await host('mx1.dst.test');
    const p = await policyServer(stsPolicy('enforce', ['mx.elsewhere.test']));
    const w = await world(zone([[10, rogue.host]], p));
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred');
    assert.match(
      String(o.text),
      /no MX host matches its mx patterns \(mx\.elsewhere\.test\); MX hosts: mx1\.dst\.test/,
    );
    assert.equal(rogue.connections, 0);
  });

  test('testing, MX without STARTTLS: delivered in plain text, and the log says what enforce would have done', async () => {
    const mx1 = await host('mx1.dst.test', { starttls: false });
    const p = await policyServer(stsPolicy('testing', ['mx1.dst.test']));
    const w = await world(zone([[10, mx1.host]], p));
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(
      mx1.transactions.map((t) => [t.recipients, t.tls]),
      [[['u@dst.test'], false]],
    );
    const line = w.stage
      .logLines()
      .find((l) => l.msg === 'MTA-STS testing: enforce would have deferred this delivery');
    assert.ok(line, 'a testing log line');
    assert.match(String(line.why), /no TLS with mx1\.dst\.test/);
    const a = attempts(w.stage, 'u@dst.test')[0]!;
    assert.equal(a.mtaSts, 'testing');
    assert.match(String(a.mtaStsFailure), /no TLS/);
  });

  test('after a restart with the policy server down and a new TXT id, the cached enforce policy still holds', async () => {
    const mx1 = await host('mx1.dst.test');
    const p = await policyServer(stsPolicy('enforce', ['mx1.dst.test']));
    const w = await world(zone([[10, mx1.host]], p));
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    await waitFor(
      () => existsSync(join(w.stage.dataDir, 'mta-sts.json')),
      'the policy cache on disk',
      10_000,
    );

    await p.down();
    await mx.dns.update(zone([[10, mx1.host]], p, '2')); // a fetch is due, and it fails
    mx1.opts.starttls = false; // STARTTLS stripped
    await w.stage.restart('SIGKILL');
    await w.stage.waitLog('MTA-STS policy cache loaded');
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['v@dst.test'] });
    const o = await nthOutcome(w.stage, 'v@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.match(String(o.text), /MTA-STS policy of dst\.test \(id 1\)/);
    assert.ok(w.stage.logLines().some((l) => l.msg === 'MTA-STS policy fetch failed' && l.id === '2'));
    assert.equal(mx1.transactions.length, 1, 'only the first message, over TLS');
    assert.deepEqual(
      mailCommands(mx1).filter((c) => /v@dst\.test/.test(c)),
      [],
    );
  });

  test('enforce learnt while an unverified connection is kept: the next message goes on a new, verified one', async () => {
    const mx1 = await host('mx1.dst.test');
    const p = await policyServer(stsPolicy('enforce', ['mx1.dst.test']));
    // No policy yet, and no negative answer cached (the record appears between the messages).
    const before = mxZone([[10, mx1.host]]);
    const w = await world({ ...before, negativeTtl: 0 });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.equal(attempts(w.stage, 'u@dst.test')[0]?.mtaSts, 'none');
    await mx.dns.update({ ...zone([[10, mx1.host]], p), negativeTtl: 0 });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['v@dst.test'] });
    const o = await nthOutcome(w.stage, 'v@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.equal(attempts(w.stage, 'v@dst.test')[0]?.mtaSts, 'enforce');
    assert.equal(mx1.connections, 2, 'the kept connection was not used under the policy');
    assert.deepEqual(
      mx1.transactions.map((t) => t.recipients[0]),
      ['u@dst.test', 'v@dst.test'],
    );
  });

  test('delivery.mta_sts = false: the policy is not looked up, delivery as without it', async () => {
    const mx1 = await host('mx1.dst.test', { starttls: false });
    const p = await policyServer(stsPolicy('enforce', ['mx1.dst.test']));
    const w = await world(zone([[10, mx1.host]], p), 'mta_sts = false');
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.equal(p.requests, 0);
    assert.equal(attempts(w.stage, 'u@dst.test')[0]?.mtaSts, undefined);
    assert.equal(outcomes(w.stage, 'u@dst.test').length, 1);
  });
});
