// Where to connect for a domain: MX lookup (RFC 5321 §5.1) through an injectable resolver
// (static route hosts are parsed by config/net.ts parseHostPort). Returns an ordered candidate
// list; connecting is the caller's job.
// Invariants: candidates are in preference order, equal preferences shuffled with the injected
// random; a domain without MX falls back to itself (implicit MX) only if it has A or AAAA records;
// an address literal ([192.0.2.1], [IPv6:...]) is its own single candidate, without DNS.
// Fails with MtaError: permanent for NXDOMAIN (550 5.1.2), Null MX (556 5.1.10, RFC 7505) and a
// domain with no mail-capable records; transient for SERVFAIL, timeouts and other resolver trouble.
// With `dnssec` (DANE), the lookups say whether they were validated: each candidate's `secure` is
// true only when its MX RRset (or, for an implicit MX, the denial of one) and its address records
// were (RFC 7672 §2.2).

import net from 'node:net';
import { DnsError, type DnsResolver, type MxRecord, type SecureType } from '../dns/types.js';
import { MtaError } from '../errors.js';
import type { TlsPolicy } from '../smtp/client/index.js';

export type { DnsResolver, MxRecord } from '../dns/types.js';

export interface MxCandidate {
  host: string;
  port: number;
  /** MX preference; -1 for an implicit MX and for static routes. */
  preference: number;
  /** The host name `host` (an address) was looked up from: TLS server name, logs, Remote-MTA. */
  name?: string;
  /** A unix-domain socket to connect to instead (LMTP); `host` then names it in logs. */
  path?: string;
  /** With DNSSEC asked for: the MX RRset and this host's address records were validated. */
  secure?: boolean;
  /** The name the address records belong to, when CNAMEs led from `name` to another one. */
  canonical?: string;
  /** The TLS this host requires, overriding the destination's (DANE: its TLSA records). */
  tls?: TlsPolicy;
  /** Why this host is not to be tried at all (DANE: its TLSA lookup failed), said in the deferral. */
  unusable?: string;
  /** What DANE found for this host (dane/lookup.ts), for the attempt's log fields. */
  dane?: DaneState;
}

/**
 * DANE's finding for one MX host: `insecure` (not validated: no DANE), `no-tlsa` (validated, no
 * TLSA records), `unusable` (TLSA records, none usable for SMTP: TLS required, unauthenticated),
 * `tlsa` (usable TLSA records: TLS required and the certificate must match), `failed` (the TLSA
 * lookup failed: the host is not tried).
 */
export type DaneState = 'insecure' | 'no-tlsa' | 'unusable' | 'tlsa' | 'failed';

export interface MxOptions {
  resolver: DnsResolver;
  /** Uniform in [0, 1); default Math.random. */
  random?: () => number;
  port?: number;
  /** Ask whether the answers were DNSSEC-validated (DANE), where the resolver can tell. */
  dnssec?: boolean;
}

/**
 * A lookup through `resolveSecure` in the shape of the plain one (a negative answer rejects with
 * its DnsError), with whether it was validated; through the plain one (never validated) when the
 * resolver cannot tell or `dnssec` is off.
 */
async function lookup<T>(
  resolver: DnsResolver,
  name: string,
  type: SecureType & ('MX' | 'A' | 'AAAA'),
  dnssec: boolean | undefined,
): Promise<{ records: T[]; secure: boolean; canonical?: string; deniedSecurely?: boolean }> {
  if (!dnssec || resolver.resolveSecure === undefined) {
    const plain =
      type === 'MX'
        ? resolver.resolveMx(name)
        : type === 'A'
          ? resolver.resolve4(name)
          : resolver.resolve6(name);
    return { records: (await plain) as T[], secure: false };
  }
  const a = await resolver.resolveSecure(name, type);
  if (a.code !== undefined) {
    const e = new DnsError(a.code, name, type);
    (e as { deniedSecurely?: boolean }).deniedSecurely = a.secure;
    throw e;
  }
  return {
    records: a.records as T[],
    secure: a.secure,
    ...(a.canonical !== undefined && { canonical: a.canonical }),
  };
}

const deniedSecurely = (e: unknown): boolean =>
  typeof e === 'object' && e !== null && (e as { deniedSecurely?: boolean }).deniedSecurely === true;

const NO_DATA = new Set(['ENODATA', 'ENOTFOUND']);

function dnsCode(e: unknown): string {
  return typeof e === 'object' && e !== null && 'code' in e
    ? String((e as { code: unknown }).code)
    : 'EUNKNOWN';
}

function transient(domain: string, what: string, e: unknown): MtaError {
  return new MtaError('DNS_TEMPFAIL', 'transient', `${what} lookup for ${domain} failed: ${dnsCode(e)}`, {
    smtp: { code: 451, enhanced: '4.4.3' },
    cause: e,
  });
}

function noSuchDomain(domain: string): MtaError {
  return new MtaError('DNS_NXDOMAIN', 'permanent', `Host or domain name not found: ${domain}`, {
    smtp: { code: 550, enhanced: '5.1.2' },
  });
}

/** Fisher–Yates shuffle of a[from..to) with the injected random. */
function shuffle<T>(a: T[], from: number, to: number, random: () => number): void {
  for (let i = to - 1; i > from; i--) {
    const j = from + Math.floor(random() * (i - from + 1));
    const t = a[i] as T;
    a[i] = a[j] as T;
    a[j] = t;
  }
}

/**
 * The address of an RFC 5321 address literal (§4.1.3): "[192.0.2.1]" or "[IPv6:2001:db8::1]";
 * undefined for anything else (a general literal "[tag:...]" names no address we can reach).
 */
export function literalAddress(domain: string): string | undefined {
  const m = /^\[(ipv6:)?([^\]]+)\]$/i.exec(domain);
  if (!m?.[2]) return undefined;
  const ip = m[2];
  return (m[1] ? net.isIPv6(ip) : net.isIPv4(ip)) ? ip : undefined;
}

export async function resolveMx(domain: string, opts: MxOptions): Promise<MxCandidate[]> {
  const random = opts.random ?? Math.random;
  const port = opts.port ?? 25;
  const name = domain.replace(/\.$/, '').toLowerCase();
  // An address literal is where the mail goes (RFC 5321 §5.1): no DNS question is asked for it.
  if (name.startsWith('[')) {
    const ip = literalAddress(name);
    if (ip !== undefined) return [{ host: ip, port, preference: -1 }];
    throw new MtaError('BAD_ADDRESS_LITERAL', 'permanent', `no address to deliver to in ${name}`, {
      smtp: { code: 550, enhanced: '5.1.2' },
    });
  }
  let records: MxRecord[];
  let secure = false;
  try {
    const r = await lookup<MxRecord>(opts.resolver, name, 'MX', opts.dnssec);
    records = r.records;
    secure = r.secure;
  } catch (e) {
    const code = dnsCode(e);
    if (code === 'ENOTFOUND') throw noSuchDomain(name);
    if (code !== 'ENODATA') throw transient(name, 'MX', e);
    records = [];
    // No MX: the domain is its own MX host, as securely as the denial was validated.
    secure = deniedSecurely(e);
  }
  const mark = (c: MxCandidate): MxCandidate => (opts.dnssec ? { ...c, secure } : c);
  // Null MX: node reports "." as an empty exchange.
  const isNull = (r: MxRecord) => r.exchange === '' || r.exchange === '.';
  if (records.length === 1 && records[0] !== undefined && isNull(records[0])) {
    throw new MtaError('NULL_MX', 'permanent', `Domain ${name} does not accept mail (null MX)`, {
      smtp: { code: 556, enhanced: '5.1.10' },
    });
  }
  records = records.filter((r) => !isNull(r));
  if (records.length === 0) return (await implicitMx(name, opts.resolver, port)).map(mark);

  const list = records
    .map((r) => ({ host: r.exchange.replace(/\.$/, '').toLowerCase(), port, preference: r.priority }))
    .sort((a, b) => a.preference - b.preference);
  let start = 0;
  for (let i = 1; i <= list.length; i++) {
    if (i === list.length || list[i]?.preference !== list[start]?.preference) {
      shuffle(list, start, i, random);
      start = i;
    }
  }
  // The same host listed twice (at two preferences) is tried once, at its best preference.
  const seen = new Set<string>();
  return list.filter((c) => !seen.has(c.host) && seen.add(c.host)).map(mark);
}

/** RFC 5321 §5.1: no MX records -> the domain itself, if it has an address. */
async function implicitMx(name: string, resolver: DnsResolver, port: number): Promise<MxCandidate[]> {
  const lookups = await Promise.allSettled([resolver.resolve4(name), resolver.resolve6(name)]);
  let hasAddress = false;
  let tempfail: unknown;
  let nx = true;
  for (const l of lookups) {
    if (l.status === 'fulfilled') {
      nx = false;
      if (l.value.length > 0) hasAddress = true;
    } else {
      const code = dnsCode(l.reason);
      if (code !== 'ENOTFOUND') nx = false;
      if (!NO_DATA.has(code)) tempfail = l.reason;
    }
  }
  if (hasAddress) return [{ host: name, port, preference: -1 }];
  if (tempfail !== undefined) throw transient(name, 'A/AAAA', tempfail);
  if (nx) throw noSuchDomain(name);
  throw new MtaError('DNS_NO_MAIL_HOST', 'permanent', `Domain ${name} has no MX, A or AAAA records`, {
    smtp: { code: 550, enhanced: '5.1.2' },
  });
}

/**
 * delivery.mx_address_limit (Postfix's smtp_mx_address_limit): the first `limit` of a domain's
 * MX addresses, in the order they are tried (after this host and the MX hosts it prefers to
 * itself were dropped), and how many the limit leaves out. A dead-host cache entry among the
 * first ones still counts: the cut is by position, so every attempt costs at most `limit` waits.
 */
export function capAddresses(cands: MxCandidate[], limit: number): { tried: MxCandidate[]; cut: number } {
  if (cands.length <= limit) return { tried: cands, cut: 0 };
  return { tried: cands.slice(0, limit), cut: cands.length - limit };
}

/**
 * Turns MX host names into addresses through the resolver (A, then AAAA), keeping preference
 * order; address literals pass through. Hosts that do not resolve are skipped. Fails only when no
 * candidate has an address: transient if any lookup failed temporarily, else permanent (5.4.4).
 */
export async function resolveAddresses(cands: MxCandidate[], resolver: DnsResolver): Promise<MxCandidate[]> {
  const out: MxCandidate[] = [];
  let tempfail: unknown;
  const looked = await Promise.all(
    cands.map(async (c) => {
      if (net.isIP(c.host) !== 0) return [c];
      // A candidate that carries `secure` asks whether its addresses were validated too.
      const dnssec = c.secure !== undefined;
      const [a, aaaa] = await Promise.allSettled([
        lookup<string>(resolver, c.host, 'A', dnssec),
        lookup<string>(resolver, c.host, 'AAAA', dnssec),
      ]);
      const list: MxCandidate[] = [];
      for (const l of [a, aaaa]) {
        if (l.status === 'fulfilled')
          for (const ip of l.value.records) {
            const x: MxCandidate = { host: ip, port: c.port, preference: c.preference, name: c.host };
            if (dnssec) x.secure = c.secure === true && l.value.secure;
            if (l.value.canonical !== undefined) x.canonical = l.value.canonical;
            list.push(x);
          }
        else if (!NO_DATA.has(dnsCode(l.reason))) tempfail ??= l.reason;
      }
      return list;
    }),
  );
  for (const l of looked) out.push(...l);
  if (out.length > 0) return out;
  const names = cands.map((c) => c.host).join(', ');
  if (tempfail !== undefined) throw transient(names, 'A/AAAA', tempfail);
  throw new MtaError('DNS_NO_ADDRESS', 'permanent', `no address found for mail host(s) ${names}`, {
    smtp: { code: 550, enhanced: '5.4.4' },
  });
}
