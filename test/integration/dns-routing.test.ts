// MX routing through real DNS: a logmta whose [dns] points at a real DNS server on loopback
// (unbound, test/support/dns-server.ts) routes by the MX and A records it serves, fails a Null MX
// or NXDOMAIN domain permanently with a bounce, and retries a domain whose DNS fails for now
// until the lookup works. Route host names are looked up there too, never by the system. An
// ETRN domain without a host is probed at its MX hosts' addresses from there.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { type DnsZones, hasUnbound, startDnsServer, type TestDnsServer } from '../support/dns-server.js';
import { SmtpSink } from '../support/sink.js';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';
import { closedPort, startRelayDaemon, type TestDaemon } from '../support/daemon.js';
import { waitFor } from '../support/wait.js';

const skip = hasUnbound() ? false : 'unbound not installed';
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function dnsServer(z: DnsZones): Promise<TestDnsServer> {
  const s = await startDnsServer(z);
  cleanups.push(() => s.stop());
  return s;
}

async function sink(): Promise<SmtpSink> {
  const s = await SmtpSink.start({});
  cleanups.push(() => s.close());
  return s;
}

/** A daemon asking `dns` for everything, delivering MX hosts on `mxPort` (the sink's port). */
async function daemon(dns: TestDnsServer, mxPort: number, extra = ''): Promise<TestDaemon> {
  const d = await startRelayDaemon(`[dns]\nservers = ["${dns.address}"]\ntimeout = "1s"\n${extra}`, {
    mxPort,
  });
  cleanups.push(() => d.stop());
  return d;
}

const reports = (s: SmtpSink) => s.transactions.filter((t) => t.sender === '');

describe('routing through a real DNS server', { skip }, () => {
  /**
   * Two MX hosts on one port, at 127.0.0.2 (the best, preference 10) and 127.0.0.1 (preference
   * 20): the daemon delivers MX hosts on one port, so only the address tells them apart.
   */
  async function twoMxHosts(): Promise<{ best: SmtpSink; backup: SmtpSink }> {
    for (let tries = 0; ; tries++) {
      const best = await SmtpSink.start({ address: '127.0.0.2' });
      cleanups.push(() => best.close());
      try {
        const backup = await SmtpSink.start({ port: best.port });
        cleanups.push(() => backup.close());
        return { best, backup };
      } catch (e) {
        if (tries >= 5) throw e; // that port was taken on 127.0.0.1: try another
      }
    }
  }

  const mxZone = (): DnsZones => ({
    zones: ['dst.test'],
    records: [
      'dst.test. 300 IN MX 20 mx2.dst.test.',
      'dst.test. 300 IN MX 10 mx1.dst.test.',
      'mx1.dst.test. 300 IN A 127.0.0.2',
      'mx2.dst.test. 300 IN A 127.0.0.1',
    ],
  });

  test('mail goes to the best MX host, at the address the DNS server gives; the backup MX sees nothing', async () => {
    const { best, backup } = await twoMxHosts();
    const dns = await dnsServer(mxZone());
    const d = await daemon(dns, best.port);
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 10_000);
    assert.equal(best.transactions.length, 1);
    assert.deepEqual(best.transactions[0]?.recipients, ['u@dst.test']);
    assert.equal(backup.connections, 0, 'the preference-20 host was not even connected to');
    const out = d.outcomes('u@dst.test')[0];
    assert.equal(out?.msg, 'delivered');
  });

  test('when the best MX host is down, the mail goes to the next one the DNS server names', async () => {
    const { best, backup } = await twoMxHosts();
    await best.close();
    const dns = await dnsServer(mxZone());
    const d = await daemon(dns, backup.port);
    await sendMail(d.port, { from: 'a@src.test', to: ['v@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 10_000);
    assert.deepEqual(
      backup.transactions.map((t) => t.recipients),
      [['v@dst.test']],
    );
    assert.equal(d.outcomes('v@dst.test')[0]?.msg, 'delivered');
  });

  test('a Null MX domain and a domain that does not exist bounce at once, without a connection', async () => {
    const bounces = await sink();
    const dns = await dnsServer({
      zones: ['nomail.test', 'dst.test'],
      records: ['nomail.test. 300 IN MX 0 .'],
    });
    const d = await daemon(dns, 1, `[[route]]\ndomain = "src.test"\nhost = "127.0.0.1:${bounces.port}"\n`);
    await sendMail(d.port, { from: 'a@src.test', to: ['u@nomail.test', 'v@gone.dst.test'] });
    await waitFor(() => reports(bounces).length >= 1 && d.settled(), 'the bounce', 10_000);
    const status = new Map(
      reports(bounces).flatMap((r) =>
        parseDsn(r.data).recipients.map((x) => [x['final-recipient'], x.status]),
      ),
    );
    assert.equal(status.get('rfc822; u@nomail.test'), '5.1.10');
    assert.equal(status.get('rfc822; v@gone.dst.test'), '5.1.2');
    assert.equal(d.daemon.pool.stats.attempts, reports(bounces).length, 'only bounces connected anywhere');
  });

  test('a domain whose DNS fails for now is deferred, then delivered once the lookup works', async () => {
    const good = await sink();
    const dns = await dnsServer({ zones: [], refused: ['later.test'], records: [] });
    const d = await daemon(dns, good.port, '[queue]\nretry = ["1s"]\n');
    await sendMail(d.port, { from: 'a@src.test', to: ['u@later.test'] });
    await waitFor(() => d.outcomes('u@later.test').length >= 1, 'the first attempt', 10_000);
    const first = d.outcomes('u@later.test')[0];
    assert.equal(first?.msg, 'deferred');
    assert.equal(first?.fields.code, 451);
    await dns.update({
      zones: ['later.test'],
      records: ['later.test. 300 IN MX 10 mx.later.test.', 'mx.later.test. 300 IN A 127.0.0.1'],
    });
    await waitFor(() => good.transactions.length === 1 && d.settled(), 'the retry', 15_000);
    assert.equal(d.outcomes('u@later.test').at(-1)?.msg, 'delivered');
  });

  test('a [[route]] host name is looked up through [dns], and one that does not resolve defers', async () => {
    const smart = await sink();
    const dns = await dnsServer({ zones: ['hosts.test'], records: ['smart.hosts.test. 300 IN A 127.0.0.1'] });
    const d = await daemon(
      dns,
      1,
      `[queue]\nretry = ["1h"]\n[[route]]\ndomain = "via.test"\nhost = "smart.hosts.test:${smart.port}"\n` +
        `[[route]]\ndomain = "typo.test"\nhost = "smrat.hosts.test:${smart.port}"\n`,
    );
    await sendMail(d.port, { from: 'a@src.test', to: ['u@via.test'] });
    await waitFor(
      () => smart.transactions.length === 1 && d.outcomes('u@via.test').length === 1,
      'delivery',
      10_000,
    );
    assert.equal(d.outcomes('u@via.test')[0]?.msg, 'delivered');
    await sendMail(d.port, { from: 'a@src.test', to: ['v@typo.test'] });
    await waitFor(() => d.outcomes('v@typo.test').length === 1, 'the attempt', 10_000);
    const v = d.outcomes('v@typo.test')[0];
    assert.equal(
      v?.msg,
      'deferred',
      "a route host that does not resolve is the configuration's fault: no bounce",
    );
    assert.equal(v?.fields.code, 451);
  });

  test('an ETRN domain found by MX is probed there: when the host comes up the probe delivers its lane, and other mail to that host goes at its next retry, not after the dead mark', async () => {
    // Both domains' MX is one host, down when the mail arrives: each first attempt is refused
    // and the address is marked dead (60 s). branch.test is an ETRN domain without a host.
    const port = await closedPort();
    const dns = await dnsServer({
      zones: ['branch.test', 'other.test', 'hosts.test'],
      records: [
        'branch.test. 300 IN MX 10 mx.hosts.test.',
        'other.test. 300 IN MX 10 mx.hosts.test.',
        'mx.hosts.test. 300 IN A 127.0.0.1',
      ],
    });
    const d = await daemon(
      dns,
      port,
      '[queue]\nretry = ["1s"]\n[[etrn]]\ndomain = "branch.test"\nprobe_interval = "500ms"\n',
    );
    await sendMail(d.port, { from: 'a@src.test', to: ['u@branch.test'] });
    await sendMail(d.port, { from: 'a@src.test', to: ['v@other.test'] });
    await waitFor(
      () => d.outcomes('u@branch.test').length >= 1 && d.outcomes('v@other.test').length >= 1,
      'the first attempts',
      10_000,
    );
    assert.equal(d.outcomes('u@branch.test')[0]?.msg, 'deferred');
    const up = await SmtpSink.start({ port });
    cleanups.push(() => up.close());
    const t0 = Date.now();
    // The probe (EHLO/QUIT at the address the [dns] server gives for the MX) finds the host
    // and flushes the lane without any ETRN; the address's dead mark is cleared (by the probe
    // and by the flush's connection), so other.test's next retry (1 s) goes through too.
    await waitFor(() => up.transactions.length === 2 && d.settled(), 'both deliveries', 15_000);
    assert.deepEqual(up.transactions.map((t) => t.recipients[0]).sort(), ['u@branch.test', 'v@other.test']);
    assert.ok(
      d.log.some((l) => l.msg === 'etrn probe succeeded'),
      'branch.test was delivered by a probe',
    );
    assert.ok(Date.now() - t0 < 30_000, 'other.test waited for the dead mark to expire');
  });
});
