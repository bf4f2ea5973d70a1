// DNS as MX delivery meets it, against a real `logmta serve` asking a real DNS server (unbound on
// loopback) and MX hosts on port 25 of addresses of their own (mx-kit.ts): an MX host whose
// address lookup fails for now, implicit MX, an MX that names a CNAME, an MX set too large for a
// datagram (TCP), equal preferences with one host down, and a DNS server that goes silent while
// mail waits. Never a bounce for a temporary DNS failure; each message at its host once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startDnsProxy } from '../support/dns-proxy.js';
import { sendMail } from '../support/inject.js';
import { mxDown, mxSink } from '../support/mx-hosts.js';
import { SmtpSink } from '../support/sink.js';
import { waitFor } from '../support/wait.js';
import { mxScenes, mxZone, nthOutcome, outcomes, reports } from './mx-kit.js';

const mx = mxScenes();
const skip = await mx.skip;

async function host(): Promise<SmtpSink> {
  const s = await mxSink();
  mx.later(() => s.close());
  return s;
}

const recipients = (s: SmtpSink) => s.transactions.flatMap((t) => t.recipients).sort();

describe('MX hosts and DNS, against logmta serve', { skip }, () => {
  test('the best MX host has no address for now (SERVFAIL): the next MX gets the mail', async () => {
    const backup = await host();
    const w = await mx.world({
      zones: ['dst.test'],
      refused: ['broken.test'],
      records: [
        'dst.test. 300 IN MX 10 mx.broken.test.',
        'dst.test. 300 IN MX 20 mx2.dst.test.',
        `mx2.dst.test. 300 IN A ${backup.host}`,
      ],
    });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(recipients(backup), ['u@dst.test']);
  });

  test("the only MX host's address lookup fails for now: deferred, never bounced; delivered once DNS answers", async () => {
    const target = await host();
    const w = await mx.world(
      {
        zones: ['dst.test'],
        refused: ['hosts.test'],
        records: ['dst.test. 300 IN MX 10 mx.hosts.test.'],
      },
      { extra: '[queue]\nretry = ["1s"]\n' },
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const first = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(first.msg, 'deferred');
    assert.equal(first.code, 451);
    await mx.dns.update({
      zones: ['dst.test', 'hosts.test'],
      records: ['dst.test. 300 IN MX 10 mx.hosts.test.', `mx.hosts.test. 300 IN A ${target.host}`],
    });
    await target.waitForTransactions(1);
    await waitFor(
      () => outcomes(w.stage, 'u@dst.test').some((o) => o.msg === 'delivered'),
      'the delivery',
      20_000,
    );
    assert.deepEqual(recipients(target), ['u@dst.test']);
    assert.equal(reports(w.bounces).length, 0);
  });

  test('no MX records: the domain itself is the mail host (implicit MX, RFC 5321 §5.1)', async () => {
    const target = await host();
    const w = await mx.world({ zones: ['dst.test'], records: [`dst.test. 300 IN A ${target.host}`] });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(recipients(target), ['u@dst.test']);
  });

  test('an MX that names a CNAME (RFC 2181 §10.3 forbids it, the Internet has it): delivered at its target', async () => {
    const target = await host();
    const w = await mx.world({
      zones: ['dst.test', 'hosting.test'],
      records: [
        'dst.test. 300 IN MX 10 mail.dst.test.',
        'mail.dst.test. 300 IN CNAME smtp.hosting.test.',
        `smtp.hosting.test. 300 IN A ${target.host}`,
      ],
    });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(recipients(target), ['u@dst.test']);
  });

  test('a recipient domain that is a CNAME is routed by the MX records of its target (RFC 5321 §5.1)', async () => {
    const target = await host();
    const w = await mx.world({
      zones: ['dst.test', 'hosting.test'],
      records: [
        'dst.test. 300 IN CNAME customer.hosting.test.',
        'customer.hosting.test. 300 IN MX 10 mx.hosting.test.',
        `mx.hosting.test. 300 IN A ${target.host}`,
        'customer.hosting.test. 300 IN A 127.0.0.1',
      ],
    });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(recipients(target), ['u@dst.test']);
  });

  test('an MX whose exchange is an IPv4 address written as a name (against RFC 1035, seen in the wild) is that address', async () => {
    const target = await host();
    const w = await mx.world({ zones: ['dst.test'], records: [`dst.test. 300 IN MX 10 ${target.host}.`] });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(recipients(target), ['u@dst.test']);
  });

  test('an MX set too large for one datagram is read over TCP; the best host gets the mail', async () => {
    const best = await host();
    const others = Array.from({ length: 40 }, (_, i) => [
      `dst.test. 300 IN MX ${20 + i} a-rather-long-mail-exchanger-name-number-${i}.backup.dst.test.`,
      `a-rather-long-mail-exchanger-name-number-${i}.backup.dst.test. 300 IN A 127.0.0.1`,
    ]).flat();
    const w = await mx.world(mxZone([[10, best.host]], others));
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(recipients(best), ['u@dst.test']);
  });

  test('two MX hosts of equal preference, one down: every message reaches the other, each once', async () => {
    const down = await mxDown();
    const up = await host();
    const w = await mx.world(
      mxZone([
        [10, down],
        [10, up.host],
      ]),
    );
    const rcpts = Array.from({ length: 6 }, (_, i) => `u${i}@dst.test`);
    await w.stage.send(rcpts, 'a@src.test');
    await waitFor(() => up.transactions.length >= 6, 'six deliveries', 20_000);
    await waitFor(
      () => rcpts.every((r) => outcomes(w.stage, r).some((o) => o.msg === 'delivered')),
      'every outcome',
      20_000,
    );
    assert.deepEqual(recipients(up), rcpts);
  });

  test('the DNS server goes silent while mail waits: deferred (timeout), never bounced; delivered exactly once when it answers again', async () => {
    const target = await host();
    const proxy = await startDnsProxy(mx.dns);
    mx.later(() => proxy.close());
    proxy.down = true;
    const w = await mx.world(mxZone([[10, target.host]]), {
      dnsServers: [proxy.address],
      extra: '[queue]\nretry = ["1s"]\n',
    });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test', 'v@dst.test'] });
    const first = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(first.msg, 'deferred');
    assert.equal(first.code, 451);
    // A second attempt in the dark, then the server is back.
    await nthOutcome(w.stage, 'u@dst.test', 2);
    assert.ok(proxy.questions > 0);
    proxy.down = false;
    await target.waitForTransactions(1);
    await waitFor(
      () =>
        ['u@dst.test', 'v@dst.test'].every((r) => outcomes(w.stage, r).some((o) => o.msg === 'delivered')),
      'the deliveries',
      20_000,
    );
    assert.equal(target.transactions.length, 1, 'one transaction for both recipients');
    assert.deepEqual(recipients(target), ['u@dst.test', 'v@dst.test']);
    assert.ok(
      outcomes(w.stage, 'u@dst.test').every((o) => o.msg !== 'failed'),
      'no temporary DNS failure became permanent',
    );
    assert.equal(reports(w.bounces).length, 0);
  });

  test('the first [dns] server is silent: the second answers, and the mail goes out', async () => {
    const target = await host();
    const silent = await startDnsProxy(mx.dns);
    mx.later(() => silent.close());
    silent.down = true;
    const w = await mx.world(mxZone([[10, target.host]]), { dnsServers: [silent.address, mx.dns.address] });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(recipients(target), ['u@dst.test']);
    assert.ok(silent.questions > 0, 'the first server was asked first');
  });

  test('a DNS server too old for EDNS0 (FORMERR to an OPT record) is asked again without it (RFC 6891 §7)', async () => {
    const target = await host();
    const old = await startDnsProxy(mx.dns);
    mx.later(() => old.close());
    old.noEdns = true;
    const w = await mx.world(mxZone([[10, target.host]]), { dnsServers: [old.address] });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.deepEqual(recipients(target), ['u@dst.test']);
  });

  test('an address-literal recipient (u@[192.0.2.1], RFC 5321 §4.1.3) is delivered to that address, without a DNS question', async () => {
    const target = await host();
    const proxy = await startDnsProxy(mx.dns);
    mx.later(() => proxy.close());
    const w = await mx.world({ zones: [], records: [] }, { dnsServers: [proxy.address] });
    const rcpt = `u@[${target.host}]`;
    await sendMail(w.stage.port, { from: 'a@src.test', to: [rcpt] });
    const o = await nthOutcome(w.stage, rcpt);
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.deepEqual(recipients(target), [rcpt]);
    assert.equal(proxy.questions, 0, 'an address literal is not a name to look up');
  });

  test('an MX host with only an IPv6 address (AAAA) gets the mail there; with IPv4 down, IPv6 is the fallback', async (t) => {
    let v6: SmtpSink;
    try {
      v6 = await SmtpSink.start({ address: '::1', port: 25 });
    } catch (e) {
      t.skip(`no [::1]:25 here (${(e as NodeJS.ErrnoException).code})`);
      return;
    }
    mx.later(() => v6.close());
    const down = await mxDown();
    const w = await mx.world({
      zones: ['dst.test', 'two.test'],
      records: [
        'dst.test. 300 IN MX 10 mx6.dst.test.',
        'mx6.dst.test. 300 IN AAAA ::1',
        'two.test. 300 IN MX 10 mx.two.test.',
        `mx.two.test. 300 IN A ${down}`,
        'mx.two.test. 300 IN AAAA ::1',
      ],
    });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test', 'v@two.test'] });
    const u = await nthOutcome(w.stage, 'u@dst.test');
    const v = await nthOutcome(w.stage, 'v@two.test');
    assert.equal(u.msg, 'delivered', JSON.stringify(u));
    assert.equal(v.msg, 'delivered', JSON.stringify(v));
    assert.match(String(u.relay), /\[::1\]/);
    assert.deepEqual(recipients(v6), ['u@dst.test', 'v@two.test']);
  });
});
