// Which MX hosts of a destination DANE applies to, and how (RFC 7672 §2.2): for each MX host
// whose MX RRset and address records were DNSSEC-validated (mx.ts `secure`), the TLSA records
// at _25._tcp.<host> — at the CNAME-expanded name first, then the MX name (§2.2.2) — decide:
//   usable records      → TLS required, the certificate must match one (tlsa.ts), SNI the TLSA
//                         base domain (§8.1); a failure defers, never falls back to plain text;
//   only unusable ones  → TLS required, not authenticated (§2.2: "encrypt");
//   none, or not validated → as without DANE (opportunistic, or MTA-STS where it applies);
//   lookup failure (SERVFAIL: bogus, or a timeout) → the host is not tried (§2.2), said so.
// Invariant: a candidate DANE applies to carries its own TLS policy (`tls`), which the pool uses
// instead of the destination's, and `dane` says for the log what was found for it.
// Fails: never rejects; lookup failures become the host's `unusable`.

import type tls from 'node:tls';
import { type DnsResolver, isNoRecords, type TlsaRecord } from '../../dns/types.js';
import { errorText } from '../../errors.js';
import type { TlsPolicy } from '../../smtp/client/index.js';
import type { DaneState, MxCandidate } from '../mx.js';
import { daneVerify, usableTlsa } from './tlsa.js';

export interface DaneLookupOptions {
  resolver: DnsResolver;
  /** The time certificates of a DANE-TA chain are judged at. */
  now: () => number;
}

type HostDane =
  | { kind: 'none' }
  | { kind: 'records'; base: string; records: TlsaRecord[] }
  | { kind: 'failed'; why: string };

/** The TLSA RRset of `_<port>._tcp.<name>`: records when validated, none when absent or not validated. */
async function tlsaAt(resolver: DnsResolver, name: string, port: number): Promise<HostDane> {
  const owner = `_${port}._tcp.${name}`;
  try {
    const a = await resolver.resolveSecure!(owner, 'TLSA');
    if (a.code !== undefined || !a.secure || a.records.length === 0) return { kind: 'none' };
    return { kind: 'records', base: name, records: a.records as TlsaRecord[] };
  } catch (e) {
    if (isNoRecords(e)) return { kind: 'none' };
    const code = (e as { code?: unknown }).code;
    return {
      kind: 'failed',
      why: `DANE: TLSA lookup of ${owner} failed (${typeof code === 'string' ? code : errorText(e)})`,
    };
  }
}

async function hostDane(resolver: DnsResolver, c: MxCandidate): Promise<HostDane> {
  const name = c.name ?? c.host;
  if (c.canonical !== undefined && c.canonical !== name) {
    const expanded = await tlsaAt(resolver, c.canonical, c.port);
    if (expanded.kind !== 'none') return expanded;
  }
  return tlsaAt(resolver, name, c.port);
}

/** The certificates the peer sent, leaf first, each followed by its issuer (DER). */
function peerChain(sock: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c = sock.getPeerCertificate(true) as tls.DetailedPeerCertificate | undefined;
  const seen = new Set<tls.DetailedPeerCertificate>();
  while (c?.raw !== undefined && !seen.has(c)) {
    seen.add(c);
    out.push(c.raw);
    if (c.issuerCertificate === c) break;
    c = c.issuerCertificate;
  }
  return out;
}

/** The TLS policy of a host with TLSA records at `base`. */
function daneTls(
  name: string,
  port: number,
  h: Extract<HostDane, { kind: 'records' }>,
  now: () => number,
): TlsPolicy {
  const owner = `_${port}._tcp.${h.base}`;
  const requiredBy = `DANE (TLSA records of ${owner})`;
  if (!h.records.some(usableTlsa))
    // §2.2: secure TLSA records, none usable: TLS is still mandatory, without authentication.
    return { mode: 'required', verify: false, servername: h.base, requiredBy };
  const names = [...new Set([name, h.base])];
  return {
    mode: 'required',
    verify: false,
    servername: h.base,
    requiredBy,
    peerCheck: (sock) => {
      const v = daneVerify(peerChain(sock), h.records, names, now());
      return v.ok
        ? { ok: true, how: v.how }
        : { ok: false, why: `the certificate of ${name} does not match: ${v.why}` };
    },
  };
}

/** `cands` with what DANE makes of each (see the header); unchanged when the resolver cannot validate. */
export async function daneCandidates(cands: MxCandidate[], o: DaneLookupOptions): Promise<MxCandidate[]> {
  if (o.resolver.resolveSecure === undefined) return cands;
  // Per MX host name (its addresses share its TLSA records): any validated address makes it a
  // DANE host, so that an insecure sibling address cannot be the way around its records.
  const looked = new Map<string, Promise<HostDane>>();
  for (const c of cands) {
    const name = c.name ?? c.host;
    if (c.secure === true && c.path === undefined && !looked.has(name))
      looked.set(name, hostDane(o.resolver, c));
  }
  return Promise.all(
    cands.map(async (c): Promise<MxCandidate> => {
      const name = c.name ?? c.host;
      const p = looked.get(name);
      if (p === undefined) return { ...c, dane: 'insecure' };
      const h = await p;
      if (h.kind === 'none') return { ...c, dane: 'no-tlsa' };
      if (h.kind === 'failed') return { ...c, dane: 'failed', unusable: h.why };
      const state: DaneState = h.records.some(usableTlsa) ? 'tlsa' : 'unusable';
      return { ...c, dane: state, tls: daneTls(name, c.port, h, o.now) };
    }),
  );
}
