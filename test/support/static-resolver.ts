// A DnsResolver answering from a table (never shipped), for unit tests that need exact answers or failures
// without a DNS server (integration tests use a real one: test/support/dns-server.ts).
// Invariant: behaves like DnsClient from the caller's side — a name absent from the table is
// ENOTFOUND, a type absent from a present name is ENODATA, an error code given in the table is
// thrown as that DnsError; results are fresh copies. Records every question in `queries`.

import { DnsError, type DnsErrorCode, type DnsResolver, type MxRecord } from '../../src/dns/types.js';

export interface StaticRecords {
  A?: string[] | DnsErrorCode;
  AAAA?: string[] | DnsErrorCode;
  MX?: MxRecord[] | DnsErrorCode;
  /** Each record's character-strings; a plain string is one record of one string. */
  TXT?: (string | string[])[] | DnsErrorCode;
  PTR?: string[] | DnsErrorCode;
}

export class StaticResolver implements DnsResolver {
  /** "TYPE name" of every question asked, in order. */
  readonly queries: string[] = [];

  constructor(private readonly table: Record<string, StaticRecords | DnsErrorCode>) {}

  private look<T>(name: string, type: keyof StaticRecords, map: (v: never) => T): Promise<T> {
    const n = name.replace(/\.$/, '').toLowerCase();
    this.queries.push(`${type} ${n}`);
    const entry = this.table[n];
    if (entry === undefined) return Promise.reject(new DnsError('ENOTFOUND', n, type));
    if (typeof entry === 'string') return Promise.reject(new DnsError(entry, n, type));
    const v = entry[type];
    if (v === undefined) return Promise.reject(new DnsError('ENODATA', n, type));
    if (typeof v === 'string') return Promise.reject(new DnsError(v, n, type));
    return Promise.resolve(map(v as never));
  }

  resolveMx(name: string): Promise<MxRecord[]> {
    return this.look(name, 'MX', (v: MxRecord[]) => v.map((r) => ({ ...r })));
  }
  resolve4(name: string): Promise<string[]> {
    return this.look(name, 'A', (v: string[]) => v.slice());
  }
  resolve6(name: string): Promise<string[]> {
    return this.look(name, 'AAAA', (v: string[]) => v.slice());
  }
  resolveTxt(name: string): Promise<string[][]> {
    return this.look(name, 'TXT', (v: (string | string[])[]) =>
      v.map((r) => (typeof r === 'string' ? [r] : r.slice())),
    );
  }
  resolvePtr(name: string): Promise<string[]> {
    return this.look(name, 'PTR', (v: string[]) => v.slice());
  }
}
