// Per-client event rates, Postfix's anvil (smtpd_client_connection_rate_limit,
// smtpd_client_message_rate_limit, smtpd_client_recipient_rate_limit): at most `count`
// connections, MAIL or RCPT commands of one client in a window of `periodMs` that opens at the
// client's first event; the first event after the window has passed opens the next one (so a
// limited client gets through again at most `periodMs` after it started).
// A client is an IPv4 address (an IPv4-mapped IPv6 address counts as IPv4) or an IPv6 /64: one
// subscriber's network, so that a sender holding a /64 is one client, not 2^64 of them.
// Memory: per kind at most `maxClients` windows. Windows are kept in the order they opened, so a
// new client first drops the windows that have ended (from the front), and when the table is still
// full, the oldest open window (its client starts counting afresh).
// Time comes from the injected clock (tests advance a FakeClock). Shared by every SMTP listener of
// a daemon; a restart or reload forgets it.
// In a cluster (`shared`, given by src/cluster/) each event is counted in Redis's window of the
// client, the same for every node, and the answer is a promise; while Redis does not answer, this
// node's own windows decide (fail open to the per-node count: mail goes on, each node allowing
// the full rate; the cluster logs the outage and counts the fallbacks). Without `shared` nothing
// here waits: the single-node path is synchronous.
// Fails: never throws.

import type { Clock } from '../../util/clock.js';
import type { ClientRatesLike, RateKind } from './options.js';

export interface WindowRate {
  count: number;
  periodMs: number;
}

/**
 * Counts one event of a client in the cluster's shared window of `kind` (src/cluster/limits.ts
 * takeWindow): the count including it (over `rate.count`: refused; `rate.count + 1`: the
 * window's first refusal), or undefined when Redis did not answer.
 */
export type SharedWindowCount = (
  kind: RateKind,
  client: string,
  rate: WindowRate,
) => Promise<number | undefined>;

export interface ClientRatesOptions {
  connection?: WindowRate;
  message?: WindowRate;
  recipient?: WindowRate;
  /** Clients that are never counted (relay_networks, loopback). */
  exempt?: (ip: string) => boolean;
  /** Windows kept per kind at most (default 100,000: some 10 MB per kind). */
  maxClients?: number;
  /** Told once per window when a client first goes over a limit (for the log). */
  onLimit?: (kind: RateKind, ip: string, rate: WindowRate) => void;
  /** A cluster's count over every node; this node's windows then only stand in for it. */
  shared?: SharedWindowCount;
}

interface Window {
  start: number;
  n: number;
}

const V4_MAPPED = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

/** The 16-bit groups of an IPv6 address as numbers, or undefined when it is not one. */
function groupsOf(ip: string): number[] | undefined {
  let s = ip;
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const part = (h: string | undefined) => (h === undefined || h === '' ? [] : h.split(':'));
  const head = part(halves[0]);
  const tail = part(halves[1]);
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0) return undefined;
  const all = [...head, ...new Array<string>(fill).fill('0'), ...tail];
  if (all.length !== 8 || !all.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  return all.map((g) => Number.parseInt(g, 16));
}

/** The client an address counts as: "192.0.2.7" or "2001:db8:1:2::/64". */
export function clientKey(ip: string): string {
  const bare = ip.includes('%') ? ip.slice(0, ip.indexOf('%')) : ip;
  const mapped = V4_MAPPED.exec(bare);
  if (mapped) return mapped[1]!;
  if (!bare.includes(':')) return bare;
  const g = groupsOf(bare);
  if (g === undefined) return bare.toLowerCase();
  return `${g
    .slice(0, 4)
    .map((x) => x.toString(16))
    .join(':')}::/64`;
}

/** A client address as replies show it: an IPv4-mapped IPv6 address as plain IPv4. */
export function shownIp(ip: string): string {
  return V4_MAPPED.exec(ip)?.[1] ?? ip;
}

/** Fixed windows of one kind of event, keyed by client. */
class Windows {
  private readonly m = new Map<string, Window>();

  constructor(
    readonly rate: WindowRate,
    private readonly max: number,
  ) {}

  /** Counts an event; false when the client is over the limit (the first time: 'first'). */
  hit(key: string, now: number): boolean | 'first' {
    let w = this.m.get(key);
    if (w !== undefined && now - w.start >= this.rate.periodMs) {
      this.m.delete(key);
      w = undefined;
    }
    if (w === undefined) {
      this.makeRoom(now);
      w = { start: now, n: 0 };
      this.m.set(key, w);
    }
    if (w.n < this.rate.count) {
      w.n++;
      return true;
    }
    if (w.n === this.rate.count) {
      w.n++; // one past: told once
      return 'first';
    }
    return false;
  }

  private makeRoom(now: number): void {
    for (const [k, w] of this.m) {
      if (now - w.start < this.rate.periodMs) break;
      this.m.delete(k);
    }
    while (this.m.size >= this.max) {
      const oldest = this.m.keys().next();
      if (oldest.done) break;
      this.m.delete(oldest.value);
    }
  }

  get size(): number {
    return this.m.size;
  }
}

export class ClientRates implements ClientRatesLike {
  private readonly windows = new Map<RateKind, Windows>();

  constructor(
    private readonly clock: Clock,
    private readonly o: ClientRatesOptions,
  ) {
    const max = o.maxClients ?? 100_000;
    for (const kind of ['connection', 'message', 'recipient'] as const) {
      const rate = o[kind];
      if (rate !== undefined) this.windows.set(kind, new Windows(rate, max));
    }
  }

  /** Whether any rate is configured (a daemon without one passes no ClientRates at all). */
  get active(): boolean {
    return this.windows.size > 0;
  }

  allow(kind: RateKind, ip: string): boolean | Promise<boolean> {
    const w = this.windows.get(kind);
    if (w === undefined || this.o.exempt?.(ip)) return true;
    const key = clientKey(ip);
    const shared = this.o.shared;
    if (shared === undefined) return this.local(kind, w, key, ip);
    return shared(kind, key, w.rate).then((n) => {
      // Redis did not answer: this node counts alone rather than refuse the client.
      if (n === undefined) return this.local(kind, w, key, ip);
      if (n === w.rate.count + 1) this.o.onLimit?.(kind, ip, w.rate);
      return n <= w.rate.count;
    });
  }

  private local(kind: RateKind, w: Windows, key: string, ip: string): boolean {
    const r = w.hit(key, this.clock.now());
    if (r === 'first') this.o.onLimit?.(kind, ip, w.rate);
    return r === true;
  }

  /** Windows held for a kind (tests: memory stays bounded). */
  size(kind: RateKind): number {
    return this.windows.get(kind)?.size ?? 0;
  }
}
