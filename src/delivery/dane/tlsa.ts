// DANE's certificate check (RFC 6698, RFC 7671, for SMTP RFC 7672 §3): does the chain an MX host
// presented match one of its TLSA records? Pure: certificates in, a verdict out (node:crypto's
// X509Certificate parses and verifies signatures; the time is the caller's).
// Invariants: only DANE-TA(2) and DANE-EE(3) with selector 0/1 and matching type 0/1/2 are
// usable (RFC 7672 §3.1: PKIX-TA/PKIX-EE are not for SMTP); DANE-EE matches the leaf alone and
// ignores its names and dates (§3.1.1); DANE-TA needs the chain from the leaf up to a trust
// anchor that matches, every signature on it valid, every certificate below the anchor within
// its dates and each intermediate a CA, and the leaf valid for one of the reference names (§3.1.2,
// §3.2.2: the MX host name, its CNAME expansion); a wildcard only as the whole leftmost label
// (§3.2.3). A trust anchor the server did not send may stand in the record itself (2 0 0, 2 1 0).
// Fails: never throws; a certificate that does not parse is a mismatch.

import { createHash, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import type { TlsaRecord } from '../../dns/types.js';

/** A record usable for SMTP (RFC 7672 §3.1). */
export function usableTlsa(r: TlsaRecord): boolean {
  return (r.usage === 2 || r.usage === 3) && (r.selector === 0 || r.selector === 1) && r.matching <= 2;
}

/** "3 1 1" and the first bytes of the data, for logs. */
export function describeTlsa(r: TlsaRecord): string {
  const hex = r.data.toString('hex');
  return `${r.usage} ${r.selector} ${r.matching} ${hex.length > 16 ? `${hex.slice(0, 16)}…` : hex}`;
}

/** The bytes a certificate contributes under `selector` (0: the whole certificate, 1: its SubjectPublicKeyInfo). */
function selected(cert: X509Certificate, selector: number): Buffer {
  return selector === 0 ? cert.raw : (cert.publicKey.export({ type: 'spki', format: 'der' }) as Buffer);
}

/** The association data of `cert` under `selector` and `matching` (0: as is, 1: SHA-256, 2: SHA-512). */
export function associationData(cert: X509Certificate, selector: number, matching: number): Buffer {
  const bytes = selected(cert, selector);
  if (matching === 0) return bytes;
  return createHash(matching === 1 ? 'sha256' : 'sha512')
    .update(bytes)
    .digest();
}

function matches(cert: X509Certificate, r: TlsaRecord): boolean {
  try {
    return associationData(cert, r.selector, r.matching).equals(r.data);
  } catch {
    return false;
  }
}

export type DaneVerdict =
  | { ok: true; record: TlsaRecord; depth: number; how: string }
  | { ok: false; why: string };

/** `cert` is signed by `key` (and, when known, names `issuer` as its issuer). */
function issuedBy(cert: X509Certificate, key: KeyObject, issuer?: X509Certificate): boolean {
  try {
    if (issuer !== undefined && !cert.checkIssued(issuer)) return false;
    return cert.verify(key);
  } catch {
    return false;
  }
}

function within(cert: X509Certificate, now: number): boolean {
  return Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo);
}

/** The leaf's name that matches one of `names` (RFC 7672 §3.2.3 wildcards), or undefined. */
function nameMatch(leaf: X509Certificate, names: readonly string[]): string | undefined {
  for (const n of names) {
    try {
      if (
        leaf.checkHost(n, {
          partialWildcards: false,
          multiLabelWildcards: false,
          singleLabelSubdomains: false,
        })
      )
        return n;
    } catch {
      // not a name checkHost takes: the next one
    }
  }
  return undefined;
}

/**
 * Checks `chain` (DER, leaf first, each issued by the next as the server sent it) against
 * `records` (already filtered to usable ones or not: unusable ones are ignored). `names` are the
 * reference identifiers for DANE-TA; `now` is the time the dates are judged at (ms).
 */
export function daneVerify(
  chainDer: readonly Buffer[],
  records: readonly TlsaRecord[],
  names: readonly string[],
  now: number,
): DaneVerdict {
  const usable = records.filter(usableTlsa);
  if (usable.length === 0) return { ok: false, why: 'no usable TLSA records' };
  const chain: X509Certificate[] = [];
  for (const der of chainDer) {
    try {
      chain.push(new X509Certificate(der));
    } catch {
      break; // what follows an unparsable certificate cannot be linked to the leaf
    }
  }
  const leaf = chain[0];
  if (leaf === undefined) return { ok: false, why: 'the server presented no certificate' };
  for (const r of usable)
    if (r.usage === 3 && matches(leaf, r))
      return { ok: true, record: r, depth: 0, how: `DANE-EE ${r.selector} ${r.matching}` };
  const ta = usable.filter((r) => r.usage === 2);
  if (ta.length === 0)
    return {
      ok: false,
      why: `the certificate matches none of the TLSA records (${usable.map(describeTlsa).join(', ')})`,
    };
  // A trust anchor among the certificates sent (not the leaf itself), or one the record holds whole.
  let anchor: { depth: number; record: TlsaRecord } | undefined;
  for (let i = 1; i < chain.length && anchor === undefined; i++) {
    const r = ta.find((t) => matches(chain[i]!, t));
    if (r) anchor = { depth: i, record: r };
  }
  if (anchor === undefined) {
    for (const r of ta.filter((t) => t.matching === 0)) {
      let key: KeyObject;
      let cert: X509Certificate | undefined;
      try {
        if (r.selector === 0) {
          cert = new X509Certificate(r.data);
          key = cert.publicKey;
        } else key = createPublicKey({ key: r.data, format: 'der', type: 'spki' });
      } catch {
        continue;
      }
      // The highest certificate sent that this anchor signed: the path ends there.
      for (let i = chain.length - 1; i >= 0 && anchor === undefined; i--)
        if (issuedBy(chain[i]!, key, cert)) anchor = { depth: i + 1, record: r };
      if (anchor !== undefined) {
        if (cert !== undefined) chain.splice(anchor.depth, chain.length, cert);
        else chain.length = anchor.depth;
        break;
      }
    }
  }
  if (anchor === undefined)
    return {
      ok: false,
      why: `no certificate of the chain matches the TLSA records (${usable.map(describeTlsa).join(', ')})`,
    };
  const d = anchor.depth;
  for (let i = 0; i < d; i++) {
    const c = chain[i]!;
    const issuer = chain[i + 1];
    const signed =
      issuer !== undefined
        ? issuedBy(c, issuer.publicKey, issuer)
        : issuedBy(c, createPublicKey({ key: anchor.record.data, format: 'der', type: 'spki' }));
    if (!signed) return { ok: false, why: `the chain to the TLSA trust anchor is broken at depth ${i}` };
    if (!within(c, now))
      return { ok: false, why: `the certificate at depth ${i} is expired or not yet valid` };
    if (issuer !== undefined && i + 1 < d && !issuer.ca)
      return { ok: false, why: `the issuer at depth ${i + 1} is no CA` };
  }
  const name = nameMatch(leaf, names);
  if (name === undefined)
    return {
      ok: false,
      why: `the certificate is not valid for ${names.join(' or ')} (DANE-TA needs the name)`,
    };
  return {
    ok: true,
    record: anchor.record,
    depth: d,
    how: `DANE-TA ${anchor.record.selector} ${anchor.record.matching}`,
  };
}
