// MX fallback as mail to the Internet meets it, against a real `logmta serve` that asks a real
// DNS server (unbound on loopback) and connects to MX hosts on port 25, each at an address of
// its own in 127.0.0.0/8 (test/support/mx-hosts.ts). The best MX host is down, a tarpit, greets
// with 421, or refuses a recipient: what the recipient's hosts and the sender's bounce sink end
// up with (each message at the right host exactly once, the bounce at the sender's).
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { type DnsZones, hasUnbound, startDnsServer, type TestDnsServer } from '../support/dns-server.js';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';
import { mxDown, mxSink, mxTarpit, port25 } from '../support/mx-hosts.js';
import { type SinkOptions, SmtpSink } from '../support/sink.js';
import { waitFor } from '../support/wait.js';
import { scenes, type Stage } from './kit.js';

const skip = !hasUnbound() ? 'unbound not installed' : await port25();
const scene = scenes();
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

let dns: TestDnsServer | undefined;
before(async () => {
  if (skip === false) dns = await startDnsServer({ zones: [], records: [] });
});
after(async () => dns?.stop());

/** A sink on port 25 of an address of its own, closed after the test. */
async function host(opts: SinkOptions = {}): Promise<SmtpSink> {
  const s = await mxSink(opts);
  closers.push(() => s.close());
  return s;
}

/** MX records of dst.test: [preference, address] per host, named mx<i>.dst.test. */
function mxZone(hosts: Array<[number, string]>, extra: string[] = []): DnsZones {
  return {
    zones: ['dst.test'],
    records: [
      ...hosts.flatMap(([pref, addr], i) => [
        `dst.test. 300 IN MX ${pref} mx${i + 1}.dst.test.`,
        `mx${i + 1}.dst.test. 300 IN A ${addr}`,
      ]),
      ...extra,
    ],
  };
}

interface World {
  stage: Stage;
  bounces: SmtpSink;
}

/** A relaying logmta asking the test DNS server; bounces for src.test go to their own sink. */
async function world(zone: DnsZones, extra = '', smtp = ''): Promise<World> {
  await dns!.update(zone);
  const bounces = await SmtpSink.start({});
  closers.push(() => bounces.close());
  const stage = await scene.stage({
    toml: `hostname = "relay.test"
local = []
[smtp]
relay_networks = ["127.0.0.0/8"]
${smtp}
[dns]
servers = ["${dns!.address}"]
timeout = "1s"
[delivery]
connect_timeout = "1s"
greeting_timeout = "1s"
[[route]]
domain = "src.test"
host = "127.0.0.1:${bounces.port}"
${extra}`,
  });
  return { stage, bounces };
}

/** The outcome log lines ("delivered", "deferred", "failed") of one recipient. */
function outcomes(s: Stage, rcpt: string): Array<Record<string, unknown>> {
  return s
    .logLines()
    .filter((l) => ['delivered', 'deferred', 'failed'].includes(String(l.msg)) && l.rcpt === rcpt);
}

async function firstOutcome(s: Stage, rcpt: string): Promise<Record<string, unknown>> {
  await waitFor(() => outcomes(s, rcpt).length > 0, `an outcome for ${rcpt}`, 15_000);
  return outcomes(s, rcpt)[0]!;
}

const reports = (s: SmtpSink) => s.transactions.filter((t) => t.sender === '');

describe('MX fallback, against logmta serve', { skip }, () => {
  test('the best MX refuses connections: the mail goes to the next preference, once', async () => {
    const down = await mxDown();
    const backup = await host();
    const w = await world(
      mxZone([
        [10, down],
        [20, backup.host],
      ]),
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await backup.waitForTransactions(1);
    assert.equal((await firstOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(
      backup.transactions.map((t) => t.recipients),
      [['u@dst.test']],
    );
  });

  test('the best MX accepts and never greets: after greeting_timeout the next MX gets the mail', async () => {
    const tarpit = await mxTarpit();
    closers.push(() => tarpit.close());
    const backup = await host();
    const w = await world(
      mxZone([
        [10, tarpit.host],
        [20, backup.host],
      ]),
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await backup.waitForTransactions(1);
    assert.equal(tarpit.connections, 1);
    assert.equal((await firstOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
  });

  test('the best MX greets with 421: the next MX gets the mail', async () => {
    const busy = await host({ greeting: '421 4.3.2 busy, try later' });
    const backup = await host();
    const w = await world(
      mxZone([
        [10, busy.host],
        [20, backup.host],
      ]),
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await backup.waitForTransactions(1);
    assert.equal(busy.transactions.length, 0);
    assert.equal((await firstOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
  });

  test('5xx to RCPT at the best MX is final: bounced, and the backup MX is not asked', async () => {
    const best = await host({ rcptReply: () => '550 5.1.1 no such user' });
    const backup = await host();
    const w = await world(
      mxZone([
        [10, best.host],
        [20, backup.host],
      ]),
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => reports(w.bounces).length === 1, 'the bounce', 15_000);
    const dsn = parseDsn(reports(w.bounces)[0]!.data);
    assert.equal(dsn.recipients[0]?.status, '5.1.1');
    assert.equal(backup.connections, 0);
  });

  test('greylisting (4xx to RCPT) at the best MX defers the recipient; the retry delivers it there once', async () => {
    let asked = 0;
    const best = await host({
      rcptReply: () => (asked++ === 0 ? '451 4.7.1 greylisted, come back later' : undefined),
    });
    const backup = await host();
    const w = await world(
      mxZone([
        [10, best.host],
        [20, backup.host],
      ]),
      '[queue]\nretry = ["1s"]\n',
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await firstOutcome(w.stage, 'u@dst.test')).msg, 'deferred');
    await best.waitForTransactions(1);
    await waitFor(() => outcomes(w.stage, 'u@dst.test').length === 2, 'the retry outcome', 15_000);
    assert.equal(outcomes(w.stage, 'u@dst.test')[1]?.msg, 'delivered');
    assert.deepEqual(
      best.transactions.map((t) => t.recipients),
      [['u@dst.test']],
    );
    assert.equal(
      backup.connections,
      0,
      'a 4xx reply is not a connection failure: the backup MX is not asked',
    );
    assert.equal(reports(w.bounces).length, 0);
  });
});

describe('an MX list that names this host (RFC 5321 §5.1), against logmta serve', { skip }, () => {
  /** Messages this daemon took in over SMTP (a loop through itself shows as more than one). */
  const received = (st: Stage) => st.logLines().filter((l) => l.msg === 'received').length;

  test('a backup MX whose primary is down keeps the mail (deferred) instead of sending it to itself; the primary gets it once it is back', async () => {
    const self = await mxDown();
    const primaryAddress = await mxDown();
    const w = await world(
      mxZone([
        [10, primaryAddress],
        [20, self],
      ]),
      '[queue]\nretry = ["1h"]\n',
      `listen = ["127.0.0.1:0", "${self}:25"]\nrelay_domains = ["dst.test"]`,
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await firstOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.match(String(o.text), new RegExp(primaryAddress.replaceAll('.', '\\.')));
    assert.equal(received(w.stage), 1, 'the backup MX did not send the mail to itself');
    const primary = await SmtpSink.start({ address: primaryAddress, port: 25 });
    closers.push(() => primary.close());
    await w.stage.admin('flush');
    await primary.waitForTransactions(1);
    await waitFor(() => outcomes(w.stage, 'u@dst.test').length === 2, 'the delivery', 15_000);
    assert.equal(outcomes(w.stage, 'u@dst.test')[1]?.msg, 'delivered');
    assert.deepEqual(
      primary.transactions.map((t) => t.recipients),
      [['u@dst.test']],
    );
    assert.equal(received(w.stage), 1);
    assert.equal(reports(w.bounces).length, 0);
  });

  test('this host as the best MX of a domain it does not deliver locally is a mail loop: bounced with 5.4.6, the lower preference not tried', async () => {
    const self = await mxDown();
    const other = await host();
    const w = await world(
      mxZone([
        [10, self],
        [20, other.host],
      ]),
      '[queue]\nretry = ["1h"]\n',
      `listen = ["127.0.0.1:0", "${self}:25"]`,
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => reports(w.bounces).length === 1, 'the bounce', 15_000);
    const dsn = parseDsn(reports(w.bounces)[0]!.data);
    assert.equal(dsn.recipients[0]?.status, '5.4.6');
    assert.match(dsn.text, /loops back to myself/);
    assert.equal(other.connections, 0, 'a lower-preference MX than this host is no next hop');
    assert.equal((await firstOutcome(w.stage, 'u@dst.test')).msg, 'failed');
    assert.equal(received(w.stage), 1);
  });
});
