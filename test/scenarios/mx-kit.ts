// The stage of the MX scenarios: a relaying `logmta serve` (kit.ts) whose [dns] is a real DNS
// server (unbound on loopback, one per test file, its zones replaced per test) and whose MX hosts
// listen on port 25 of addresses of their own (test/support/mx-hosts.ts), as on the Internet;
// bounces for the sender's domain src.test go to a sink of their own. Outcomes are read from the
// daemon's log, deliveries from the sinks.
// Invariant: everything a test starts is closed after it (hosts, bounce sink, daemon); the DNS
// server is stopped after the file.
// Fails: `skip` is the reason when unbound is missing or port 25 cannot be bound.

import { after, afterEach, before } from 'node:test';
import { type DnsZones, hasUnbound, startDnsServer, type TestDnsServer } from '../support/dns-server.js';
import { port25 } from '../support/mx-hosts.js';
import { SmtpSink } from '../support/sink.js';
import { waitFor } from '../support/wait.js';
import { scenes, type Stage } from './kit.js';

/** MX records of dst.test: [preference, address] per host, named mx<i>.dst.test. */
export function mxZone(hosts: Array<[number, string]>, extra: string[] = []): DnsZones {
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

export interface World {
  stage: Stage;
  /** Where reports to src.test senders arrive. */
  bounces: SmtpSink;
}

export interface WorldOptions {
  /** TOML appended at the top level (after [[route]] src.test: start with a table header). */
  extra?: string;
  /** Keys added to [smtp]. */
  smtp?: string;
  /** The [dns] servers (default the file's DNS server). */
  dnsServers?: string[];
  /** Keys added to [delivery]. */
  delivery?: string;
  /** Files written beside the daemon's configuration (relative paths in it resolve there). */
  files?: Record<string, string>;
}

/** The outcome log lines ("delivered", "deferred", "failed") of one recipient. */
export function outcomes(s: Stage, rcpt: string): Array<Record<string, unknown>> {
  return s
    .logLines()
    .filter((l) => ['delivered', 'deferred', 'failed'].includes(String(l.msg)) && l.rcpt === rcpt);
}

/** Waits until `rcpt` has `n` outcomes and returns the n-th. */
export async function nthOutcome(s: Stage, rcpt: string, n = 1): Promise<Record<string, unknown>> {
  await waitFor(() => outcomes(s, rcpt).length >= n, `outcome ${n} of ${rcpt}`, 20_000);
  return outcomes(s, rcpt)[n - 1]!;
}

/** Reports (null sender) a sink took. */
export const reports = (s: SmtpSink) => s.transactions.filter((t) => t.sender === '');

/** Messages the daemon took in over SMTP (a loop through itself shows as more than one). */
export const received = (st: Stage) => st.logLines().filter((l) => l.msg === 'received').length;

/** The stage of one test file: call once at its top. */
export function mxScenes() {
  const skip: Promise<false | string> = hasUnbound() ? port25() : Promise.resolve('unbound not installed');
  const scene = scenes();
  const closers: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of closers.splice(0).reverse()) await c();
  });
  let dns: TestDnsServer | undefined;
  before(async () => {
    if ((await skip) === false) dns = await startDnsServer({ zones: [], records: [] });
  });
  after(async () => dns?.stop());
  return {
    skip,
    /** Closes `c` after the test. */
    later(c: () => Promise<void>): void {
      closers.push(c);
    },
    get dns(): TestDnsServer {
      if (!dns) throw new Error('no DNS server (skipped?)');
      return dns;
    },
    /** A relaying logmta answering from `zone`, MX hosts on port 25, 1 s network timeouts. */
    async world(zone: DnsZones, o: WorldOptions = {}): Promise<World> {
      await this.dns.update(zone);
      const bounces = await SmtpSink.start({});
      closers.push(() => bounces.close());
      const servers = (o.dnsServers ?? [this.dns.address]).map((s) => `"${s}"`).join(', ');
      const stage = await scene.stage({
        toml: `hostname = "relay.test"
local = []
[smtp]
relay_networks = ["127.0.0.0/8"]
${o.smtp ?? ''}
[dns]
servers = [${servers}]
timeout = "1s"
attempts = 1
[delivery]
connect_timeout = "1s"
greeting_timeout = "1s"
${o.delivery ?? ''}
[[route]]
domain = "src.test"
host = "127.0.0.1:${bounces.port}"
${o.extra ?? ''}`,
        ...(o.files ? { files: o.files } : {}),
      });
      return { stage, bounces };
    },
  };
}
