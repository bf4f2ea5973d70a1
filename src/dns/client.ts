// The DNS client behind every lookup of a running logmta: questions go to the configured
// servers ([dns] servers, else the system's nameservers) as real DNS packets, and answers are
// kept in a small cache that honours their TTLs.
// Invariants: servers are tried in order, `attempts` rounds at most, each exchange bounded by
// `timeoutMs`; an answer (records, NXDOMAIN or NODATA) from any server ends the lookup; SERVFAIL,
// REFUSED and transport failures move on to the next server. CNAME chains in an answer are
// followed (8 links at most). Identical lookups in flight share one exchange.
// Fails with DnsError (types.ts): ENOTFOUND / ENODATA for the two negative answers, the last
// failure seen (ETIMEOUT, ESERVFAIL, EREFUSED, ECONNREFUSED, ...) when no server answered.
// DNSSEC (for DANE): with `dnssec` other than "never", questions to servers whose word is trusted
// ask for validation (transport.ts), and an answer counts as validated only if its AD bit is set
// and it came from such a server: one on loopback (the validating resolver on this host, as
// Postfix's smtp_dns_support_level = dnssec assumes), or any with "always" (the operator says
// the path is safe). A CNAME chain is validated only if every part of it was.

import { getServers } from 'node:dns';
import type { DecodedPacket } from 'dns-packet';
import { type Clock, systemClock } from '../util/clock.js';
import { type CachedResult, DnsCache } from './cache.js';
import { type DnsServer, query } from './transport.js';
import net from 'node:net';
import {
  DnsError,
  type DnsErrorCode,
  type DnsResolver,
  type LookupType,
  type MxRecord,
  type SecureAnswer,
  type SecureType,
  type TlsaRecord,
} from './types.js';
import { MAX_DOMAIN_LENGTH, MAX_LABEL_LENGTH } from '../util/domain.js';

export interface DnsClientOptions {
  /** Servers to ask, in order; default the system's (from /etc/resolv.conf). */
  servers?: DnsServer[];
  /** Bound of one exchange with one server (default 2 s). */
  timeoutMs?: number;
  /** Rounds over the server list (default 2). */
  attempts?: number;
  /** Cached answers at most (default 10,000; 0 disables the cache). */
  cacheSize?: number;
  /** Cap of a positive answer's TTL (default 1 h). */
  maxTtlMs?: number;
  /** Cap of a negative answer's TTL (default 15 min). */
  maxNegativeTtlMs?: number;
  clock?: Clock;
  /**
   * Whose AD bit is believed ([dns] dnssec): "loopback" servers only, "always" (the path to the
   * servers is trusted), or "never" (no answer is ever validated; the default here).
   */
  dnssec?: DnssecTrust;
  /** The exchange itself; tests replace it to count or fail exchanges. */
  exchange?: (
    server: DnsServer,
    name: string,
    type: LookupType,
    timeoutMs: number,
    dnssec?: boolean,
  ) => Promise<DecodedPacket>;
}

export type DnssecTrust = 'loopback' | 'always' | 'never';

/** Whether the AD bit of `server`'s answers is believed under `trust`. */
export function trustsAd(server: DnsServer, trust: DnssecTrust): boolean {
  if (trust === 'never') return false;
  if (trust === 'always') return true;
  const h = server.host.toLowerCase();
  if (net.isIPv4(h)) return h.startsWith('127.');
  return h === '::1' || h === '0:0:0:0:0:0:0:1' || h === '::ffff:127.0.0.1';
}

/** Nameservers as node:dns lists them ("1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353"). */
export function parseServers(list: readonly string[]): DnsServer[] {
  const out: DnsServer[] = [];
  for (const s of list) {
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s) ?? /^([^:]+)(?::(\d+))?$/.exec(s);
    if (m?.[1]) out.push({ host: m[1], port: m[2] ? Number(m[2]) : 53 });
    else out.push({ host: s, port: 53 }); // a bare IPv6 address
  }
  return out;
}

/** The system resolver's nameservers (from /etc/resolv.conf, read by node at start-up). */
export function systemServers(): DnsServer[] {
  const out = parseServers(getServers());
  // No nameserver line: the resolver library's own default.
  return out.length > 0 ? out : [{ host: '127.0.0.1', port: 53 }];
}

const FAIL_RCODES: Record<string, DnsErrorCode> = {
  SERVFAIL: 'ESERVFAIL',
  REFUSED: 'EREFUSED',
  FORMERR: 'EFORMERR',
  NOTIMP: 'ENOTIMP',
};

const MAX_CNAME = 8;

function normalise(name: string, type: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1).toLowerCase() : name.toLowerCase();
  // Any octets may stand in a DNS label (a TXT owner, _dmarc, ...): only the lengths of
  // util/domain.ts are checked.
  if (
    n.length === 0 ||
    n.length > MAX_DOMAIN_LENGTH ||
    n.split('.').some((l) => l.length === 0 || l.length > MAX_LABEL_LENGTH)
  )
    throw new DnsError('EBADNAME', name, type, `not a domain name: ${JSON.stringify(name)}`);
  return n;
}

/** A resource record as dns-packet decodes it (the fields used here). */
interface Rr {
  name: string;
  type: string;
  ttl?: number;
  data?: unknown;
}

const rrs = (list: unknown[] | undefined): Rr[] => (list ?? []) as Rr[];

/** RFC 2308 §5: the negative TTL is the smaller of the SOA's TTL and its MINIMUM field. */
function negativeTtl(r: DecodedPacket): number {
  for (const a of rrs(r.authorities)) {
    if (a.type === 'SOA') return Math.min(a.ttl ?? 0, (a.data as { minimum: number }).minimum);
  }
  return 0; // no SOA: not cached
}

type Value = string[] | MxRecord[] | string[][] | TlsaRecord[];

function convert(type: LookupType, records: Rr[]): Value {
  switch (type) {
    case 'MX':
      return records.map((a) => {
        const d = a.data as { exchange: string; preference?: number };
        return { exchange: d.exchange === '.' ? '' : d.exchange, priority: d.preference ?? 0 };
      });
    case 'TXT':
      return records.map((a) => {
        const d = a.data as string | Buffer | (string | Buffer)[];
        const parts = Array.isArray(d) ? d : [d];
        return parts.map((p) => (typeof p === 'string' ? p : p.toString('utf8')));
      });
    case 'TLSA':
      return records.map((a) => {
        const d = a.data as { usage: number; selector: number; matchingType: number; certificate: Buffer };
        return { usage: d.usage, selector: d.selector, matching: d.matchingType, data: d.certificate };
      });
    default:
      return records.map((a) => String(a.data));
  }
}

export class DnsClient implements DnsResolver {
  private readonly servers: DnsServer[];
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly maxTtlMs: number;
  private readonly maxNegativeTtlMs: number;
  private readonly cache: DnsCache;
  private readonly inflight = new Map<string, Promise<Answered>>();
  private readonly exchange: NonNullable<DnsClientOptions['exchange']>;
  private readonly trust: DnssecTrust;
  /** Exchanges sent and lookups answered from the cache (for tests and metrics). */
  readonly stats = { exchanges: 0, cacheHits: 0 };

  constructor(opts: DnsClientOptions = {}) {
    this.servers = opts.servers && opts.servers.length > 0 ? opts.servers : systemServers();
    this.timeoutMs = opts.timeoutMs ?? 2_000;
    this.attempts = Math.max(1, opts.attempts ?? 2);
    this.maxTtlMs = opts.maxTtlMs ?? 3_600_000;
    this.maxNegativeTtlMs = opts.maxNegativeTtlMs ?? 900_000;
    const clock = opts.clock ?? systemClock;
    this.cache = new DnsCache(opts.cacheSize ?? 10_000, () => clock.now());
    this.exchange = opts.exchange ?? query;
    this.trust = opts.dnssec ?? 'never';
  }

  /** Whether any configured server's validation is believed (else nothing is ever secure). */
  get validating(): boolean {
    return this.servers.some((s) => trustsAd(s, this.trust));
  }

  /** The servers asked, for `logmta check` and the start-up log. */
  get serverList(): readonly DnsServer[] {
    return this.servers;
  }

  async resolveSecure(rawName: string, type: SecureType): Promise<SecureAnswer> {
    const name = normalise(rawName, type);
    const r = (await this.result(name, type, 0)).result;
    const secure = r.secure === true;
    if (!r.ok) return { records: [], secure, code: r.code };
    const out: SecureAnswer = { records: r.value.slice() as SecureAnswer['records'], secure };
    if (r.canonical !== undefined && r.canonical !== name) out.canonical = r.canonical;
    return out;
  }

  resolveMx(name: string): Promise<MxRecord[]> {
    return this.lookup(name, 'MX') as Promise<MxRecord[]>;
  }
  resolve4(name: string): Promise<string[]> {
    return this.lookup(name, 'A') as Promise<string[]>;
  }
  resolve6(name: string): Promise<string[]> {
    return this.lookup(name, 'AAAA') as Promise<string[]>;
  }
  resolveTxt(name: string): Promise<string[][]> {
    return this.lookup(name, 'TXT') as Promise<string[][]>;
  }
  resolvePtr(name: string): Promise<string[]> {
    return this.lookup(name, 'PTR') as Promise<string[]>;
  }

  /** Forgets every cached answer. */
  flush(): void {
    this.cache.clear();
  }

  private async lookup(rawName: string, type: LookupType): Promise<Value> {
    const name = normalise(rawName, type);
    const r = (await this.result(name, type, 0)).result;
    if (!r.ok)
      throw new DnsError(r.code, name, type, r.code === 'ENOTFOUND' ? 'no such domain' : 'no records');
    return r.value.slice() as Value;
  }

  /** The answer for (name, type) from the cache or the servers, with how long it may be kept. */
  private async result(name: string, type: LookupType, depth: number): Promise<Answered> {
    const key = `${type} ${name}`;
    const hit = this.cache.entry<Value>(key);
    if (hit !== undefined) {
      this.stats.cacheHits++;
      return { result: hit.result, ttlMs: hit.leftMs };
    }
    let p = this.inflight.get(key);
    if (p === undefined) {
      p = this.ask(name, type, depth).then((a) => {
        this.cache.set(key, a.result, a.ttlMs);
        return a;
      });
      const settled = p.finally(() => this.inflight.delete(key));
      settled.catch(() => {});
      this.inflight.set(key, p);
    }
    return p;
  }

  private async ask(name: string, type: LookupType, depth: number): Promise<Answered> {
    let last: DnsError | undefined;
    for (let round = 0; round < this.attempts; round++) {
      for (const server of this.servers) {
        let resp: DecodedPacket;
        try {
          this.stats.exchanges++;
          resp = await this.exchange(server, name, type, this.timeoutMs, trustsAd(server, this.trust));
        } catch (e) {
          last = e instanceof DnsError ? e : new DnsError('EBADRESP', name, type, (e as Error).message);
          continue;
        }
        const rcode = (resp as { rcode?: string }).rcode ?? 'NOERROR';
        const secure = resp.flag_ad === true && trustsAd(server, this.trust);
        if (rcode === 'NXDOMAIN') return this.negative('ENOTFOUND', resp, secure);
        if (rcode !== 'NOERROR') {
          last = new DnsError(
            FAIL_RCODES[rcode] ?? 'EBADRESP',
            name,
            type,
            `${server.host}:${server.port} answered ${rcode}`,
          );
          continue;
        }
        return this.positive(name, type, resp, depth, secure);
      }
    }
    throw last ?? new DnsError('ETIMEOUT', name, type);
  }

  private negative(code: 'ENOTFOUND' | 'ENODATA', resp: DecodedPacket, secure: boolean): Answered {
    return {
      result: { ok: false, code, ...(secure && { secure }) },
      ttlMs: Math.min(negativeTtl(resp) * 1000, this.maxNegativeTtlMs),
    };
  }

  private async positive(
    name: string,
    type: LookupType,
    resp: DecodedPacket,
    depth: number,
    secure: boolean,
  ): Promise<Answered> {
    const answers = rrs(resp.answers);
    let current = name;
    let ttl = Number.POSITIVE_INFINITY;
    for (; depth <= MAX_CNAME; depth++) {
      const here = answers.filter((a) => a.name.toLowerCase() === current);
      const records = here.filter((a) => a.type === type);
      if (records.length > 0) {
        for (const a of records) ttl = Math.min(ttl, a.ttl ?? 0);
        return {
          result: {
            ok: true,
            value: convert(type, records),
            ...(current !== name && { canonical: current }),
            ...(secure && { secure }),
          },
          ttlMs: Math.min(ttl * 1000, this.maxTtlMs),
        };
      }
      const cname = here.find((a) => a.type === 'CNAME');
      if (cname === undefined) break;
      ttl = Math.min(ttl, cname.ttl ?? 0);
      current = String(cname.data).toLowerCase();
      if (!answers.some((a) => a.name.toLowerCase() === current)) {
        // The server gave the alias without its target (an authoritative-only server does):
        // look the target up, and keep the answer no longer than either part allows.
        if (depth + 1 > MAX_CNAME) break;
        const target = await this.result(current, type, depth + 1);
        const t = target.result;
        const result: CachedResult<Value> = t.ok
          ? { ok: true, value: t.value, canonical: t.canonical ?? current }
          : { ok: false, code: t.code };
        if (secure && t.secure === true) result.secure = true;
        return { result, ttlMs: Math.min(ttl * 1000, target.ttlMs, this.maxTtlMs) };
      }
    }
    return this.negative('ENODATA', resp, secure);
  }
}

interface Answered {
  result: CachedResult<Value>;
  /** How long it may be cached (0 = not at all). */
  ttlMs: number;
}
