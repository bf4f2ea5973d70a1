// Domain homes: the one node that holds each ETRN/ODMR domain's mail for its customer. Kept in
// the homes hash in Redis; assigned explicitly (`logmta cluster home`, a drain) or, the first
// time any node sees the domain, by rendezvous hashing over the live nodes and then stored with
// HSETNX — so the first writer wins, every node agrees, and membership changes never move a
// domain by themselves. Changes are announced on the events channel; the whole hash is also
// re-read periodically, and a copy is kept in the data directory so that a node restarted while
// Redis is down still knows where mail goes.
// Invariant: homeOf() answers from memory only (no I/O on the mail path); a domain with no known
// home is treated as homed here — its mail is held locally, which is always safe, and moves
// home once the home is known. No home is chosen while `claimWait` says to wait (right after
// Redis (re)connected, until this node's view of the live nodes is fresh and the other nodes have
// had time to write back the homes a restarted, empty Redis lost): a node that knew no home
// must not claim a domain that another node knows is homed elsewhere.
// Fails: never throws; a Redis that does not answer leaves the cache as it is (ensure() then
// resolves undefined and the caller holds the mail here).

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.js';
import { type ClusterNotice, type Keys, parseNotice } from './keys.js';
import type { RedisLink } from './redis.js';
import { rendezvous } from './rendezvous.js';

export interface HomesOptions {
  link: RedisLink;
  keys: Keys;
  self: string;
  /** Nodes a new domain may be homed on (alive, not draining). */
  candidates(): string[];
  /** File the last known homes are kept in (JSON). */
  cacheFile: string;
  log: Logger;
  /** Re-read the whole hash this often (default 30 s). */
  reloadMs?: number;
  setTimer(ms: number, fn: () => void): () => void;
  /** Milliseconds to wait before a first home may be chosen now (0: at once). */
  claimWait?: () => number;
}

export class Homes {
  private readonly map = new Map<string, string>();
  private readonly ensuring = new Map<string, Promise<string | undefined>>();
  private readonly listeners: Array<(domain: string, node: string) => void> = [];
  private readonly noticeListeners: Array<(n: ClusterNotice) => void> = [];
  private sub: Redis | undefined;
  private cancel: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly o: HomesOptions) {}

  async start(): Promise<void> {
    try {
      const saved = JSON.parse(readFileSync(this.o.cacheFile, 'utf8')) as Record<string, string>;
      for (const [d, n] of Object.entries(saved)) if (typeof n === 'string') this.map.set(d, n);
    } catch {
      // No copy yet (first start) or unreadable: Redis is the source anyway.
    }
    await this.reload();
    const sub = this.o.link.subscriber();
    this.sub = sub;
    sub.on('message', (_channel: string, text: string) => {
      const n = parseNotice(text);
      if (!n) return;
      if (n.type === 'home') this.learn(n.domain, n.node);
      for (const l of this.noticeListeners) l(n);
    });
    // Every (re)connection resubscribes by itself; a reload then catches what was missed (and
    // writes back homes a restarted Redis lost) once the command connection is back too.
    sub.on('ready', () => void this.reload());
    this.o.link.onChange((up) => {
      if (up) void this.reload();
    });
    void sub.subscribe(this.o.keys.events).catch(() => {});
    const tick = (): void => {
      void this.reload().finally(() => {
        if (!this.stopped) this.cancel = this.o.setTimer(this.o.reloadMs ?? 30_000, tick);
      });
    };
    this.cancel = this.o.setTimer(this.o.reloadMs ?? 30_000, tick);
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.sub?.disconnect();
  }

  /** Told of every home learnt or changed (not of ones that stay the same). */
  onChange(fn: (domain: string, node: string) => void): void {
    this.listeners.push(fn);
  }

  /** Told of every notice on the events channel (drains). */
  onNotice(fn: (n: ClusterNotice) => void): void {
    this.noticeListeners.push(fn);
  }

  /** The known home of a domain, from memory. */
  homeOf(domain: string): string | undefined {
    return this.map.get(domain.toLowerCase());
  }

  all(): Map<string, string> {
    return this.map;
  }

  /**
   * The home of a domain, choosing and storing one the first time (rendezvous over the live
   * nodes; HSETNX so that the first node to store one wins). Undefined when Redis cannot say.
   */
  ensure(domain: string): Promise<string | undefined> {
    const d = domain.toLowerCase();
    const known = this.map.get(d);
    if (known !== undefined) return Promise.resolve(known);
    let p = this.ensuring.get(d);
    if (!p) {
      const wait = this.o.claimWait?.() ?? 0;
      if (wait > 0) {
        // Held here meanwhile; asked again once the wait is over (one timer per domain).
        if (!this.deferred.has(d)) {
          this.deferred.add(d);
          this.o.setTimer(wait, () => {
            this.deferred.delete(d);
            if (!this.stopped) void this.ensure(d);
          });
        }
        return Promise.resolve(undefined);
      }
      p = this.claim(d).finally(() => this.ensuring.delete(d));
      this.ensuring.set(d, p);
    }
    return p;
  }

  private readonly deferred = new Set<string>();

  private async claim(d: string): Promise<string | undefined> {
    const { link, keys } = this.o;
    const choice = rendezvous(d, this.o.candidates()) ?? this.o.self;
    const r = await link.run((x) => x.multi().hsetnx(keys.homes, d, choice).hget(keys.homes, d).exec(), 2);
    const set = r?.[0]?.[1];
    const home = r?.[1]?.[1];
    if (typeof home !== 'string') {
      link.fellBack();
      return undefined;
    }
    if (set === 1) {
      this.o.log.info({ domain: d, node: home }, 'cluster: domain homed (first seen)');
      await link.run((x) => x.publish(keys.events, JSON.stringify({ type: 'home', domain: d, node: home })));
    }
    this.learn(d, home);
    return home;
  }

  /** Sets a domain's home (operator, drain) and tells every node. False when Redis did not answer. */
  async set(domain: string, node: string): Promise<boolean> {
    const d = domain.toLowerCase();
    const { link, keys } = this.o;
    const ok = await link.run(
      (x) =>
        x
          .multi()
          .hset(keys.homes, d, node)
          .publish(keys.events, JSON.stringify({ type: 'home', domain: d, node, from: this.o.self }))
          .exec(),
      2,
    );
    if (ok === undefined) return false;
    this.learn(d, node);
    return true;
  }

  /** Re-reads the whole hash (periodically, and after reconnecting). */
  async reload(): Promise<void> {
    const all = await this.o.link.run((x) => x.hgetall(this.o.keys.homes));
    if (all === undefined) return;
    for (const [d, n] of Object.entries(all)) this.learn(d, n, false);
    // Homes Redis lost (a restart without persistence, a failover to a stale replica) are
    // written back from what we knew — first writer wins — so no domain moves by accident.
    const lost = [...this.map].filter(([d]) => all[d] === undefined);
    if (lost.length > 0) {
      await this.o.link.run((x) => {
        const m = x.multi();
        for (const [d, n] of lost) m.hsetnx(this.o.keys.homes, d, n);
        return m.exec();
      }, lost.length);
      this.o.log.info({ domains: lost.length }, 'cluster: homes missing from Redis written back');
    }
    this.save();
  }

  private learn(domain: string, node: string, save = true): void {
    if (this.map.get(domain) === node) return;
    this.map.set(domain, node);
    if (save) this.save();
    for (const l of this.listeners) l(domain, node);
  }

  private save(): void {
    try {
      const tmp = `${this.o.cacheFile}.tmp`;
      writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.map)), { mode: 0o600 });
      renameSync(tmp, this.o.cacheFile);
    } catch (e) {
      this.o.log.warn(
        { err: e instanceof Error ? e.message : String(e) },
        'cluster: cannot save the homes cache',
      );
    }
  }
}
