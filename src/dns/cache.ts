// A small DNS answer cache keyed by (type, name): positive answers for the smallest TTL of the
// records used, negative answers (NXDOMAIN, NODATA) for the SOA's negative TTL (RFC 2308 §5),
// both capped. Failures (timeouts, SERVFAIL) are never cached.
// Invariants: an entry is never served after its expiry by the injected clock; the cache holds at
// most `maxEntries` entries (the oldest inserted goes first); a TTL of 0 is not cached.
// Never throws.

/** An answer; `secure`: DNSSEC-validated by a trusted resolver; `canonical`: the CNAME target. */
export type CachedResult<T> = (
  | { ok: true; value: T; canonical?: string }
  | { ok: false; code: 'ENOTFOUND' | 'ENODATA' }
) & { secure?: boolean };

interface Entry {
  expires: number;
  result: CachedResult<unknown>;
}

export class DnsCache {
  private readonly map = new Map<string, Entry>();

  constructor(
    private readonly maxEntries: number,
    private readonly now: () => number,
  ) {}

  get size(): number {
    return this.map.size;
  }

  get<T>(key: string): CachedResult<T> | undefined {
    return this.entry<T>(key)?.result;
  }

  /** The live entry and how long it has left (ms). */
  entry<T>(key: string): { result: CachedResult<T>; leftMs: number } | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    const left = e.expires - this.now();
    if (left <= 0) {
      this.map.delete(key);
      return undefined;
    }
    return { result: e.result as CachedResult<T>, leftMs: left };
  }

  set(key: string, result: CachedResult<unknown>, ttlMs: number): void {
    if (this.maxEntries <= 0 || ttlMs <= 0) return;
    this.map.delete(key);
    this.map.set(key, { expires: this.now() + ttlMs, result });
    while (this.map.size > this.maxEntries) {
      const oldest = this.map.keys().next().value as string;
      this.map.delete(oldest);
    }
  }

  clear(): void {
    this.map.clear();
  }
}
