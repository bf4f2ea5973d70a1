// A real DNS server for tests: Debian's unbound on 127.0.0.1 (a free port), answering from
// local zones the test lists, so that MX routing, SPF, DKIM keys, DMARC policies and DNSBL
// entries are looked up through real DNS packets. Also the glue other programs need to ask it:
// a libunbound configuration for opendkim (ResolverConfiguration) and the address for dnspython.
// Invariants: it answers only for the zones given (static local zones: an unlisted name is
// NXDOMAIN with the zone's SOA, an unlisted type NODATA); zones in `refused` and every other name
// get REFUSED (a temporary DNS failure), so nothing is ever looked up beyond loopback; stop()
// kills the process and removes its directory; a test process that exits kills it too.
// Fails: startDnsServer rejects with unbound's stderr when it cannot start in 10 s.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasTool } from './daemon.js';
import { stablePort } from './ports.js';

export const UNBOUND = '/usr/sbin/unbound';

/** Whether the test DNS server can run here (`{ skip: 'unbound not installed' }` otherwise). */
export function hasUnbound(): boolean {
  return hasTool('unbound') || hasTool(UNBOUND);
}

export interface DnsZones {
  /** Zone apexes answered authoritatively, e.g. ["example.org", "dnsbl.test"]. */
  zones: string[];
  /** Records in zone-file form with absolute names: "mx.example.org. 300 IN A 127.0.0.1"; see txt(). */
  records: string[];
  /** Zones whose every name is answered REFUSED (a DNS temporary error). */
  refused?: string[];
  /** Negative-answer TTL (the SOA minimum) of every zone, seconds; default 60. */
  negativeTtl?: number;
}

export interface TestDnsServer {
  host: string;
  port: number;
  /** "127.0.0.1:PORT", as [dns] servers takes it. */
  address: string;
  dir: string;
  /** Replaces the records (and zones) and reloads; resolves when the server answers from them. */
  update(z: DnsZones): Promise<void>;
  /** A libunbound configuration file that forwards everything to this server (for opendkim). */
  libunboundConfig(): string;
  stop(): Promise<void>;
}

const abs = (n: string): string => (n.endsWith('.') ? n : `${n}.`);

/**
 * A TXT record line: the value split into character-strings of at most 255 octets (a DKIM key
 * longer than that is several strings of one record, as DNS requires).
 */
export function txt(name: string, value: string, ttl = 300): string {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(value.slice(i, i + 255));
  if (parts.length === 0) parts.push('');
  return `${abs(name)} ${ttl} IN TXT ${parts.map((p) => `"${p.replace(/(["\\])/g, '\\$1')}"`).join(' ')}`;
}

/**
 * The server: lines of a test unbound on 127.0.0.1:`port`, in the foreground, files in `dir`,
 * answering loopback clients only; `modules` its module-config.
 */
export function unboundServer(dir: string, port: number, modules: string, queryLocalhost: boolean): string[] {
  return [
    'server:',
    '  interface: 127.0.0.1',
    `  port: ${port}`,
    '  do-daemonize: no',
    '  chroot: ""',
    '  username: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 1',
    '  do-ip6: no',
    '  num-threads: 1',
    '  so-reuseport: no',
    '  access-control: 127.0.0.0/8 allow',
    `  module-config: "${modules}"`,
    `  do-not-query-localhost: ${queryLocalhost ? 'no' : 'yes'}`,
    // Every answer fresh from the local data: the cache under test is logmta's, not unbound's.
    '  msg-cache-size: 0',
    '  rrset-cache-size: 0',
  ];
}

function config(dir: string, port: number, z: DnsZones): string {
  const neg = z.negativeTtl ?? 60;
  const lines = unboundServer(dir, port, 'iterator', false);
  const q = (s: string) => `'${s.replace(/'/g, "\\'")}'`;
  for (const zone of z.zones) {
    lines.push(`  local-zone: "${abs(zone)}" static`);
    const hasSoa = z.records.some((r) =>
      new RegExp(`^${abs(zone).replace(/\./g, '\\.')}\\s+\\d+\\s+IN\\s+SOA\\s`, 'i').test(r),
    );
    if (!hasSoa)
      lines.push(
        `  local-data: ${q(`${abs(zone)} ${neg} IN SOA ns.${abs(zone)} hostmaster.${abs(zone)} 1 3600 600 86400 ${neg}`)}`,
      );
  }
  for (const zone of z.refused ?? []) lines.push(`  local-zone: "${abs(zone)}" always_refuse`);
  lines.push('  local-zone: "." refuse');
  for (const r of z.records) lines.push(`  local-data: ${q(r)}`);
  lines.push('remote-control:', '  control-enable: no', '');
  return lines.join('\n');
}

/**
 * A port free for both UDP and TCP on 127.0.0.1, below the ephemeral range (support/ports.ts):
 * NSD restarted on it to load new zones cannot find it taken in the moment it is down.
 */
export const freePort = (): Promise<number> => stablePort({ udp: true });

const live = new Set<ChildProcess>();
let hooked = false;

export async function startDnsServer(zones: DnsZones): Promise<TestDnsServer> {
  const dir = mkdtempSync(join(tmpdir(), 'logmta-dns-'));
  const confFile = join(dir, 'unbound.conf');
  if (!hooked) {
    hooked = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  let lastError = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    writeFileSync(confFile, config(dir, port, zones));
    const child = spawn(hasTool('unbound') ? 'unbound' : UNBOUND, ['-d', '-c', confFile], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    live.add(child);
    let stderr = '';
    let starts = 0;
    const waiters: (() => void)[] = [];
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      stderr += d; // a few lines per start: kept whole
      starts = (stderr.match(/start of service/g) ?? []).length;
      for (const w of waiters.splice(0)) w();
    });
    const exited = new Promise<void>((res) =>
      child.once('exit', () => {
        live.delete(child);
        for (const w of waiters.splice(0)) w();
        res();
      }),
    );
    const waitStarts = async (n: number): Promise<boolean> => {
      const end = Date.now() + 10_000;
      while (starts < n && child.exitCode === null && child.signalCode === null && Date.now() < end) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, 100);
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
      return starts >= n;
    };
    if (!(await waitStarts(1))) {
      child.kill('SIGKILL');
      await exited;
      lastError = stderr;
      continue; // most likely the port was taken in between: try another
    }
    let libunbound: string | undefined;
    return {
      host: '127.0.0.1',
      port,
      address: `127.0.0.1:${port}`,
      dir,
      async update(z: DnsZones) {
        writeFileSync(confFile, config(dir, port, z));
        const want = starts + 1;
        child.kill('SIGHUP');
        if (!(await waitStarts(want))) throw new Error(`unbound did not reload:\n${stderr}`);
      },
      libunboundConfig() {
        libunbound ??= (() => {
          const f = join(dir, 'libunbound.conf');
          writeFileSync(
            f,
            [
              'server:',
              '  do-not-query-localhost: no',
              'forward-zone:',
              '  name: "."',
              `  forward-addr: 127.0.0.1@${port}`,
              '',
            ].join('\n'),
          );
          return f;
        })();
        return libunbound;
      },
      async stop() {
        child.kill('SIGKILL');
        await exited;
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`unbound did not start:\n${lastError}`);
}
