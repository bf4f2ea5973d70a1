// DNSSEC for tests, as a receiving domain runs it: NSD (an authoritative server) serves zones
// signed with ldns-signzone (keys from ldns-keygen, made per zone at run time) on 127.0.0.1, and
// unbound on 127.0.0.1 validates them against trust anchors for exactly those zones (their DS),
// so a client asking unbound gets the AD bit for signed data, SERVFAIL for a bad signature, and
// no AD for an unsigned zone (no trust anchor covers it; none for the root either).
// `bogus` owner names get their signatures corrupted after signing: what an attacker forging
// that RRset looks like to a validator.
// Invariants: both servers listen on loopback only and answer only for the listed zones (every
// other name is REFUSED by unbound); update() resolves when NSD serves the new serial of every
// zone and unbound has reloaded (its caches emptied); stop() kills both and removes the files.
// Fails: `dnssecSkip` is the reason when a program is missing; start rejects with the stderr of
// the program that did not come up in 10 s.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DecodedPacket } from 'dns-packet';
import { queryUdp } from '../../src/dns/transport.js';
import type { LookupType } from '../../src/dns/types.js';
import { freePort, UNBOUND, unboundServer } from './dns-server.js';
import { toolPath } from './tools.js';

export interface SignedZone {
  /** The apex, e.g. "dst.test". */
  name: string;
  /** Records in zone-file form with absolute names ("mx1.dst.test. 300 IN A 127.1.2.3"). */
  records: string[];
  /** Signed and anchored in unbound (default true); false: served unsigned, so insecure. */
  signed?: boolean;
  /** Owner names whose signatures are corrupted after signing (their answers turn bogus). */
  bogus?: string[];
  /** The negative-answer TTL (SOA TTL and minimum), seconds; default 60. */
  negativeTtl?: number;
}

const NSD = '/usr/sbin/nsd';
const tool = (n: string, fallback?: string) => toolPath(n) ?? (fallback ? toolPath(fallback) : undefined);

/** False when NSD, ldns-keygen, ldns-signzone and unbound are all here, else the skip reason. */
export function dnssecSkip(): false | string {
  const missing = [
    ['nsd', tool('nsd', NSD)],
    ['ldns-keygen', tool('ldns-keygen')],
    ['ldns-signzone', tool('ldns-signzone')],
    ['unbound', tool('unbound', UNBOUND)],
  ]
    .filter(([, p]) => p === undefined)
    .map(([n]) => n);
  return missing.length === 0 ? false : `${missing.join(', ')} not installed (Debian: nsd ldnsutils unbound)`;
}

export interface DnssecServer {
  /** unbound's "127.0.0.1:PORT", for [dns] servers. */
  address: string;
  /** Replaces the zones (re-signing them) and reloads both servers. */
  update(zones: SignedZone[]): Promise<void>;
  stop(): Promise<void>;
}

const abs = (n: string): string => (n.endsWith('.') ? n : `${n}.`);
const ymd = (ms: number) => new Date(ms).toISOString().slice(0, 10).replace(/-/g, '');

/** A child process and a way to wait for a line of its stderr to appear `n` times. */
function run(cmd: string, args: string[], ready: RegExp) {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const waiters: Array<() => void> = [];
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    stderr += d;
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  void exited.then(() => {
    for (const w of waiters.splice(0)) w();
  });
  const count = () => (stderr.match(new RegExp(ready.source, 'g')) ?? []).length;
  return {
    child,
    exited,
    stderr: () => stderr,
    count,
    async until(n: number): Promise<void> {
      const end = Date.now() + 10_000;
      while (count() < n) {
        if (child.exitCode !== null || child.signalCode !== null || Date.now() > end)
          throw new Error(`${cmd} did not come up:\n${stderr}`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, 100);
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
    },
    async kill(): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Flips a character of the signatures of the RRsets owned by `owners` (not of their NSEC). */
function corrupt(signed: string, owners: string[]): string {
  const want = new Set(owners.map((o) => abs(o).toLowerCase()));
  return signed
    .split('\n')
    .map((l) => {
      const f = l.split(/\s+/);
      // The NSEC chain stays intact: only the records themselves are forged.
      if (f[3] !== 'RRSIG' || !want.has((f[0] ?? '').toLowerCase()) || /^NSEC/.test(f[4] ?? '')) return l;
      const sig = f[f.length - 1]!;
      const i = Math.floor(sig.length / 2);
      f[f.length - 1] = sig.slice(0, i) + (sig[i] === 'A' ? 'B' : 'A') + sig.slice(i + 1);
      return f.join(' ');
    })
    .join('\n');
}

export async function startDnssecServer(zones: SignedZone[]): Promise<DnssecServer> {
  const dir = mkdtempSync(join(tmpdir(), 'logmta-dnssec-'));
  const keys = new Map<string, { ksk: string; zsk: string; ds: string }>();
  const nsdPort = await freePort();
  const ubPort = await freePort();
  let serial = 0;
  let nsd: ReturnType<typeof run> | undefined;
  let unbound: ReturnType<typeof run> | undefined;

  const keyFor = (zone: string) => {
    let k = keys.get(zone);
    if (!k) {
      const gen = (ksk: boolean) =>
        execFileSync(tool('ldns-keygen')!, ['-a', 'ECDSAP256SHA256', ...(ksk ? ['-k'] : []), zone], {
          cwd: dir,
          encoding: 'utf8',
        }).trim();
      const ksk = gen(true);
      const zsk = gen(false);
      const ds = readFileSync(join(dir, `${ksk}.ds`), 'utf8')
        .trim()
        .split(/\s+/);
      // "zone. [ttl] IN DS tag alg digesttype digest" → unbound's trust-anchor "zone. DS ...".
      k = { ksk, zsk, ds: [ds[0], ...ds.slice(ds.indexOf('DS'))].join(' ') };
      keys.set(zone, k);
    }
    return k;
  };

  const writeZones = (list: SignedZone[]) => {
    serial++;
    for (const z of list) {
      const apex = abs(z.name);
      const file = join(dir, `${z.name}.zone`);
      writeFileSync(
        file,
        [
          `${apex} ${z.negativeTtl ?? 60} IN SOA ns.${apex} hostmaster.${apex} ${serial} 3600 600 86400 ${z.negativeTtl ?? 60}`,
          `${apex} 60 IN NS ns.${apex}`,
          `ns.${apex} 60 IN A 127.0.0.1`,
          ...z.records,
          '',
        ].join('\n'),
      );
      if (z.signed === false) {
        writeFileSync(`${file}.served`, readFileSync(file));
        continue;
      }
      const k = keyFor(z.name);
      const now = Date.now();
      execFileSync(
        tool('ldns-signzone')!,
        ['-i', ymd(now - 86_400_000), '-e', ymd(now + 30 * 86_400_000), '-o', apex, file, k.ksk, k.zsk],
        { cwd: dir },
      );
      writeFileSync(`${file}.served`, corrupt(readFileSync(`${file}.signed`, 'utf8'), z.bogus ?? []));
    }
    writeFileSync(
      join(dir, 'nsd.conf'),
      [
        'server:',
        `  ip-address: 127.0.0.1@${nsdPort}`,
        `  zonesdir: "${dir}"`,
        '  username: ""',
        '  chroot: ""',
        `  pidfile: ""`,
        '  database: ""',
        `  zonelistfile: "${dir}/zone.list"`,
        `  xfrdfile: "${dir}/xfrd.state"`,
        `  xfrdir: "${dir}"`,
        '  verbosity: 1',
        '  server-count: 1',
        '  do-ip6: no',
        'remote-control:',
        '  control-enable: no',
        ...list.flatMap((z) => ['zone:', `  name: "${z.name}"`, `  zonefile: "${z.name}.zone.served"`]),
        '',
      ].join('\n'),
    );
    const anchors = list
      .filter((z) => z.signed !== false)
      .map((z) => `  trust-anchor: "${keyFor(z.name).ds}"`);
    writeFileSync(
      join(dir, 'unbound.conf'),
      [
        ...unboundServer(dir, ubPort, 'validator iterator', true),
        '  val-log-level: 2',
        '  local-zone: "." refuse',
        '  local-zone: "test." nodefault',
        ...list.map((z) => `  local-zone: "${abs(z.name)}" transparent`),
        ...anchors,
        ...list.flatMap((z) => [
          'stub-zone:',
          `  name: "${abs(z.name)}"`,
          `  stub-addr: 127.0.0.1@${nsdPort}`,
        ]),
        'remote-control:',
        '  control-enable: no',
        '',
      ].join('\n'),
    );
  };

  /** Waits until NSD answers every zone's SOA with the current serial. */
  const served = async (list: SignedZone[]) => {
    const end = Date.now() + 10_000;
    for (const z of list) {
      for (;;) {
        let r: DecodedPacket | undefined;
        try {
          r = await queryUdp({ host: '127.0.0.1', port: nsdPort }, z.name, 'SOA' as LookupType, 500);
        } catch {
          // not up yet
        }
        const soa = r?.answers?.find((a) => a.type === 'SOA') as { data?: { serial?: number } } | undefined;
        if (soa?.data?.serial === serial) break;
        if (Date.now() > end)
          throw new Error(`nsd does not serve ${z.name} serial ${serial}:\n${nsd?.stderr()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };

  const load = async (list: SignedZone[]) => {
    writeZones(list);
    // NSD is restarted (zones come and go); unbound reloads on SIGHUP, caches emptied.
    await nsd?.kill();
    nsd = run(tool('nsd', NSD)!, ['-d', '-c', join(dir, 'nsd.conf')], /nsd started/);
    await served(list);
    if (unbound === undefined) {
      unbound = run(tool('unbound', UNBOUND)!, ['-d', '-c', join(dir, 'unbound.conf')], /start of service/);
      await unbound.until(1);
    } else {
      const n = unbound.count() + 1;
      unbound.child.kill('SIGHUP');
      await unbound.until(n);
    }
  };

  const stop = async () => {
    await nsd?.kill();
    await unbound?.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await load(zones);
  } catch (e) {
    await stop();
    throw e;
  }
  process.once('exit', () => {
    nsd?.child.kill('SIGKILL');
    unbound?.child.kill('SIGKILL');
  });
  return { address: `127.0.0.1:${ubPort}`, update: load, stop };
}
