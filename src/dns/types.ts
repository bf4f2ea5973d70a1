// The DNS interface every lookup in logmta goes through (MX routing, SPF/DKIM/DMARC TXT
// records, DNSBL A records), and its errors. DnsClient (client.ts) implements it over real DNS
// packets; StaticResolver (test/support/static-resolver.ts) from a table, for unit tests.
// Invariant: results and errors follow node:dns/promises, so callers written against node's
// resolver (and libraries such as mailauth) work unchanged: an absent name rejects with code
// ENOTFOUND, a name without records of the type with ENODATA (both permanent), anything else
// (ESERVFAIL, EREFUSED, ETIMEOUT, ECONNREFUSED, EBADRESP, ...) is transient.
// `resolveSecure` (DANE's lookups) says besides whether the answer was DNSSEC-validated by a
// resolver whose word we take (client.ts: a loopback one, or one the operator trusts).

import { MtaError } from '../errors.js';

export interface MxRecord {
  exchange: string;
  priority: number;
}

export interface DnsResolver {
  resolveMx(name: string): Promise<MxRecord[]>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
  /** Each record as its character-strings, in order (join them for SPF/DKIM/DMARC). */
  resolveTxt(name: string): Promise<string[][]>;
  resolvePtr(name: string): Promise<string[]>;
  /**
   * DNSSEC-aware lookup (DANE, RFC 7672): the records and whether they were validated. A
   * negative answer (NXDOMAIN, NODATA) resolves with no records and its code, since whether a
   * denial was validated matters too; failures reject as elsewhere. Absent: nothing is ever
   * validated (a resolver of tests, or one without DNSSEC).
   */
  resolveSecure?(name: string, type: SecureType): Promise<SecureAnswer>;
  /** False when no server's validation is believed: `resolveSecure` then never says secure. */
  readonly validating?: boolean;
}

/** A TLSA record (RFC 6698 §2.1): certificate usage, selector, matching type, association data. */
export interface TlsaRecord {
  usage: number;
  selector: number;
  matching: number;
  data: Buffer;
}

/** The record types DANE looks up with their validation status. */
export type SecureType = 'MX' | 'A' | 'AAAA' | 'TLSA';

export interface SecureAnswer {
  /** MxRecord[] for MX, addresses for A/AAAA, TlsaRecord[] for TLSA; empty for a negative answer. */
  records: MxRecord[] | string[] | TlsaRecord[];
  /** The resolver validated the answer (or the denial) and we trust it to. */
  secure: boolean;
  /** Where CNAMEs led (lower case), when the records belong to another name than asked. */
  canonical?: string;
  /** ENOTFOUND (NXDOMAIN) or ENODATA (NODATA) for a negative answer. */
  code?: 'ENOTFOUND' | 'ENODATA';
}

/** The record types `lookup()` answers (SPF, DKIM, DMARC and DNSBL; MX routing; DANE's TLSA). */
export type LookupType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'PTR' | 'TLSA';

/** Codes of node:dns used here; ENOTFOUND and ENODATA are answers, the rest are failures. */
export type DnsErrorCode =
  | 'ENOTFOUND'
  | 'ENODATA'
  | 'ESERVFAIL'
  | 'EREFUSED'
  | 'ETIMEOUT'
  | 'ECONNREFUSED'
  | 'EBADRESP'
  | 'EFORMERR'
  | 'ENOTIMP'
  | 'EBADNAME';

export class DnsError extends MtaError {
  readonly hostname: string;
  readonly rrtype: string;
  constructor(code: DnsErrorCode, hostname: string, rrtype: string, detail?: string) {
    const permanent = code === 'ENOTFOUND' || code === 'ENODATA' || code === 'EBADNAME';
    super(code, permanent ? 'permanent' : 'transient', `${rrtype} ${hostname}: ${detail ?? code}`);
    this.name = 'DnsError';
    this.hostname = hostname;
    this.rrtype = rrtype;
  }
}

/** True for the two "the answer is: nothing" results (NXDOMAIN, NODATA). */
export function isNoRecords(e: unknown): boolean {
  const code = typeof e === 'object' && e !== null && 'code' in e ? (e as { code: unknown }).code : undefined;
  return code === 'ENOTFOUND' || code === 'ENODATA';
}

/**
 * `resolver.resolve(name, type)` in the shape of node's dns.promises.resolve, for libraries that
 * take one lookup function (mailauth's `resolver` option).
 */
export function lookupFunction(r: DnsResolver): (name: string, type: string) => Promise<unknown> {
  return (name, type) => {
    switch (type.toUpperCase()) {
      case 'A':
        return r.resolve4(name);
      case 'AAAA':
        return r.resolve6(name);
      case 'MX':
        return r.resolveMx(name);
      case 'TXT':
        return r.resolveTxt(name);
      case 'PTR':
        return r.resolvePtr(name);
      default:
        return Promise.reject(new DnsError('ENOTIMP', name, type, `record type ${type} is not looked up`));
    }
  };
}
