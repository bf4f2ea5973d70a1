// Which MTA-STS policy applies to mail for a domain now (RFC 8461 §5.1): the `_mta-sts` TXT
// record through the daemon's resolver, the policy fetched (fetch.ts) when its id is new, and a
// cache of the policies known, kept on disk (store.ts) so that it outlives restarts.
// Invariants: a cached policy is used until it expires (fetchedAt + max_age) whatever DNS or the
// policy server say meanwhile — a TXT record gone, a lookup that fails, a fetch that fails —
// and is replaced only by a policy fetched successfully; a TXT id equal to the cached one needs
// no fetch (a policy older than refreshMs is fetched again in the background, so one in steady
// use does not run out); no policy and no cache is "none" (delivery as without MTA-STS).
// Lookups of one domain in flight share one answer; a fetch that failed is not repeated for
// the same domain and id before retryFetchMs, so a dead policy server costs one wait, not one
// per message.
// Fails: never rejects; what went wrong is logged (component mta-sts) and answered as above.

import { errorText } from '../../errors.js';
import { isNoRecords, type DnsResolver } from '../../dns/types.js';
import type { Logger } from '../../log.js';
import type { Clock } from '../../util/clock.js';
import { parseStsPolicy, parseStsRecord, type StsMode, type StsPolicy } from './policy.js';
import type { PolicyStore, StoredPolicy } from './store.js';

/** The policy a delivery goes by. */
export interface StsApplied {
  domain: string;
  /** The policy's mode; "none" also when the domain has no policy. */
  mode: StsMode;
  policy: StsPolicy | undefined;
  /** The TXT id of the policy, when there is one. */
  id: string | undefined;
  /** Where the policy came from: fetched for this delivery, or the cache. */
  source: 'fetched' | 'cache' | 'none';
}

export interface StsOptions {
  resolver: DnsResolver;
  clock: Clock;
  /** The policy text of a domain (fetch.ts fetchPolicy, bound to its options). */
  fetch: (domain: string) => Promise<string>;
  /** Where the cache lives between runs; undefined: in memory only. */
  store?: PolicyStore;
  log: Logger;
  /** A failed fetch for one domain and id is not tried again before this (default 5 min). */
  retryFetchMs?: number;
  /** A policy fetched longer ago than this is fetched again, in the background (default 1 day). */
  refreshMs?: number;
  /** Policies kept at most (the oldest fetched go first; default 100,000). */
  maxEntries?: number;
}

interface Entry extends StoredPolicy {
  policy: StsPolicy;
}

export class StsPolicies {
  private readonly cache = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<StsApplied>>();
  private readonly refreshing = new Set<string>();
  /** `${domain} ${id}` → when its fetch failed. */
  private readonly failed = new Map<string, number>();
  readonly stats = { lookups: 0, fetches: 0, fetchFailures: 0 };

  constructor(private readonly o: StsOptions) {
    const now = o.clock.now();
    for (const [domain, s] of o.store?.load() ?? []) {
      const p = parseStsPolicy(s.text);
      if (!p.ok) {
        o.log.warn({ domain, why: p.why }, 'MTA-STS policy cache entry ignored: not a policy');
        continue;
      }
      const e: Entry = { ...s, policy: p.value };
      if (expiry(e) > now) this.cache.set(domain, e);
    }
    if (this.cache.size > 0) o.log.info({ policies: this.cache.size }, 'MTA-STS policy cache loaded');
  }

  /** Policies cached now (unexpired ones and those not yet found expired). */
  get size(): number {
    return this.cache.size;
  }

  /** The policy for mail to `domain` (lower case, no trailing dot). */
  policyFor(domain: string): Promise<StsApplied> {
    // An address literal has no DNS name to publish a policy under.
    if (domain.startsWith('[')) return Promise.resolve(none(domain));
    const running = this.inFlight.get(domain);
    if (running) return running;
    const p = this.discover(domain).finally(() => this.inFlight.delete(domain));
    this.inFlight.set(domain, p);
    return p;
  }

  /** Testing mode: the delivery went on, and this is what enforce would have refused. */
  reportTesting(a: StsApplied, host: string, why: string): void {
    this.o.log.warn(
      { domain: a.domain, id: a.id, mode: a.mode, host, why },
      'MTA-STS testing: enforce would have deferred this delivery',
    );
  }

  private live(domain: string): Entry | undefined {
    const e = this.cache.get(domain);
    if (e && expiry(e) <= this.o.clock.now()) {
      this.cache.delete(domain);
      return undefined;
    }
    return e;
  }

  private async discover(domain: string): Promise<StsApplied> {
    this.stats.lookups++;
    const cached = this.live(domain);
    let id: string | undefined;
    try {
      const r = parseStsRecord(await this.o.resolver.resolveTxt(`_mta-sts.${domain}`));
      if (r.ok) id = r.value.id;
      else if (cached)
        this.o.log.debug({ domain, why: r.why }, 'MTA-STS record unusable: the cached policy applies');
    } catch (e) {
      // A lookup that failed says nothing: the cached policy (if any) goes on.
      if (!isNoRecords(e)) this.o.log.warn({ domain, err: errorText(e) }, 'MTA-STS record lookup failed');
    }
    if (cached && (id === undefined || id === cached.id)) {
      if (id !== undefined && this.o.clock.now() - cached.fetchedAt >= (this.o.refreshMs ?? 86_400_000))
        this.refresh(domain, id);
      return applied(domain, cached, 'cache');
    }
    if (id === undefined) return none(domain);
    const fresh = await this.fetch(domain, id);
    if (fresh) return applied(domain, fresh, 'fetched');
    // §5.1: a policy that cannot be fetched leaves the cached one in force until it expires.
    return cached ? applied(domain, cached, 'cache') : none(domain);
  }

  private refresh(domain: string, id: string): void {
    if (this.refreshing.has(domain)) return;
    this.refreshing.add(domain);
    void this.fetch(domain, id).finally(() => this.refreshing.delete(domain));
  }

  /** Fetches and parses the policy for TXT id `id`; caches and saves it. undefined when that fails. */
  private async fetch(domain: string, id: string): Promise<Entry | undefined> {
    const key = `${domain} ${id}`;
    const now = this.o.clock.now();
    const at = this.failed.get(key);
    if (at !== undefined && now - at < (this.o.retryFetchMs ?? 300_000)) return undefined;
    this.stats.fetches++;
    let why: string;
    try {
      const text = await this.o.fetch(domain);
      const p = parseStsPolicy(text);
      if (p.ok) {
        this.failed.delete(key);
        const e: Entry = { id, text, fetchedAt: this.o.clock.now(), policy: p.value };
        this.cache.delete(domain);
        this.cache.set(domain, e);
        this.trim();
        this.o.log.info(
          { domain, id, mode: p.value.mode, mx: p.value.mx, maxAge: p.value.maxAge },
          'MTA-STS policy fetched',
        );
        void this.o.store?.save(() => this.entries());
        return e;
      }
      why = `not a policy: ${p.why}`;
    } catch (e) {
      why = errorText(e);
    }
    this.stats.fetchFailures++;
    this.failed.set(key, now);
    if (this.failed.size > 10_000) this.failed.delete(this.failed.keys().next().value as string);
    this.o.log.warn({ domain, id, why }, 'MTA-STS policy fetch failed');
    return undefined;
  }

  private trim(): void {
    const max = this.o.maxEntries ?? 100_000;
    while (this.cache.size > max) this.cache.delete(this.cache.keys().next().value as string);
  }

  /** What goes to disk: the unexpired policies. */
  private entries(): Map<string, StoredPolicy> {
    const now = this.o.clock.now();
    const out = new Map<string, StoredPolicy>();
    for (const [d, e] of this.cache)
      if (expiry(e) > now) out.set(d, { id: e.id, text: e.text, fetchedAt: e.fetchedAt });
    return out;
  }
}

function expiry(e: Entry): number {
  return e.fetchedAt + e.policy.maxAge * 1000;
}

function none(domain: string): StsApplied {
  return { domain, mode: 'none', policy: undefined, id: undefined, source: 'none' };
}

function applied(domain: string, e: Entry, source: 'fetched' | 'cache'): StsApplied {
  return { domain, mode: e.policy.mode, policy: e.policy, id: e.id, source };
}
