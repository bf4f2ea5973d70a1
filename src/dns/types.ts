// The DNS interface every lookup in logmta goes through (MX routing, SPF/DKIM/DMARC TXT
// records, DNSBL A records), and its errors. DnsClient (client.ts) implements it over real DNS
// packets; StaticResolver (test/support/static-resolver.ts) from a table, for unit tests.
// Invariant: results and errors follow node:dns/promises, so callers written against node's
// resolver (and libraries such as mailauth) work unchanged: an absent name rejects with code
// ENOTFOUND, a name without records of the type with ENODATA (both permanent), anything else
// (ESERVFAIL, EREFUSED, ETIMEOUT, ECONNREFUSED, EBADRESP, ...) is transient.

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
}

/** The record types `lookup()` answers (what SPF, DKIM, DMARC and DNSBL ask for). */
export type LookupType = 'A' | 'AAAA' | 'MX' | 'TXT' | 'PTR';

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
