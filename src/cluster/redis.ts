// The cluster's connection to Redis (ioredis), and whether Redis is usable right now. Redis holds
// only membership, domain homes, counters and limits — never mail — so every caller has a local
// answer to fall back on, and this file makes sure asking never blocks: no offline queue (a
// command while disconnected fails at once), a per-command timeout, one attempt per command,
// and reconnection forever in the background.
// Invariant: `up` is false from the first failed command (or lost connection) until a command
// succeeds again or the connection is ready again; each change is logged once and counted, so
// an outage costs two log lines however many requests fall back meanwhile.
// Fails: run() never throws — it resolves undefined when Redis did not answer.

import { Redis, type RedisOptions } from 'ioredis';
import type { ClusterConfig } from '../config/index.js';
import type { Logger } from '../log.js';

export interface RedisStats {
  /** Commands sent (a pipeline counts each of its commands). */
  commands: number;
  /** Commands that failed or timed out. */
  errors: number;
  /** Decisions taken locally because Redis was unreachable (limits, homes). */
  fallbacks: number;
  /** Outages seen (up → down transitions). */
  outages: number;
}

function options(c: ClusterConfig): RedisOptions {
  const o: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: c.redisTimeoutMs,
    connectTimeout: Math.max(c.redisTimeoutMs, 1_000),
    // Keep trying in the background, never faster than every 200 ms nor slower than every 2 s.
    retryStrategy: (n) => Math.min(200 * n, 2_000),
    enableReadyCheck: true,
  };
  if (c.password !== undefined) o.password = c.password;
  if (c.redis.kind === 'sentinel') {
    o.sentinels = c.redis.sentinels.map((s) => ({ host: s.host, port: s.port }));
    o.name = c.redis.master;
    o.db = c.redis.db;
    o.sentinelRetryStrategy = (n) => Math.min(200 * n, 2_000);
  }
  return o;
}

export class RedisLink {
  readonly client: Redis;
  readonly stats: RedisStats = { commands: 0, errors: 0, fallbacks: 0, outages: 0 };
  private ok = false;
  /** When `up` last became true (Date.now()); 0 while down. */
  upSince = 0;
  private closed = false;
  private readonly listeners: Array<(up: boolean) => void> = [];
  private readonly subscribers: Redis[] = [];

  constructor(
    private readonly config: ClusterConfig,
    private readonly log: Logger,
  ) {
    const o = options(config);
    this.client = config.redis.kind === 'url' ? new Redis(config.redis.url, o) : new Redis(o);
    this.client.on('ready', () => this.set(true, 'connected'));
    this.client.on('close', () => this.set(false, 'connection closed'));
    // ioredis emits an error per failed reconnect; the state change is what we log.
    this.client.on('error', () => {});
  }

  /**
   * Connects in the background; resolves when connected or after `waitMs` (default the Redis
   * timeout: a daemon never waits longer for Redis), whichever first.
   */
  async start(waitMs = this.config.redisTimeoutMs): Promise<void> {
    // Ready, not connect()'s promise: that one fails at the first refused or slow attempt, while
    // the background reconnection may well succeed within the wait.
    const ready = new Promise<void>((r) => this.client.once('ready', () => r()));
    void this.client.connect().catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      ready,
      new Promise<void>((r) => {
        timer = setTimeout(r, waitMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    if (!this.ok) this.set(false, 'not reachable at start');
  }

  get up(): boolean {
    return this.ok;
  }

  onChange(fn: (up: boolean) => void): void {
    this.listeners.push(fn);
  }

  /** A second connection for SUBSCRIBE (a subscribed connection can run nothing else). */
  subscriber(): Redis {
    const s = this.client.duplicate({ lazyConnect: true });
    s.on('error', () => {});
    // A subscriber may queue its SUBSCRIBE until connected, and resubscribes after reconnecting.
    s.options.enableOfflineQueue = true;
    this.subscribers.push(s);
    void s.connect().catch(() => {});
    return s;
  }

  /** Runs a Redis call; undefined when Redis did not answer (and the failure is recorded). */
  async run<T>(fn: (r: Redis) => Promise<T>, commands = 1): Promise<T | undefined> {
    if (this.closed) return undefined;
    if (this.client.status !== 'ready') {
      this.set(false, `connection ${this.client.status}`);
      return undefined;
    }
    this.stats.commands += commands;
    try {
      const v = await fn(this.client);
      this.set(true, 'answering again');
      return v;
    } catch (e) {
      this.stats.errors++;
      this.set(false, e instanceof Error ? e.message : String(e));
      return undefined;
    }
  }

  /** A decision was taken locally because Redis was not usable. */
  fellBack(): void {
    this.stats.fallbacks++;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.subscribers) s.disconnect();
    this.client.disconnect();
  }

  private set(up: boolean, why: string): void {
    if (this.closed || up === this.ok) {
      if (!up && !this.ok && this.stats.outages === 0 && !this.warnedAtStart) {
        this.warnedAtStart = true;
        this.log.warn(
          { why },
          'cluster: Redis unreachable; local limits and the last known homes are in force',
        );
      }
      return;
    }
    this.ok = up;
    this.upSince = up ? Date.now() : 0;
    if (up) this.log.info({ why }, 'cluster: Redis reachable; shared limits in force again');
    else {
      this.stats.outages++;
      this.warnedAtStart = true;
      this.log.warn(
        { why },
        'cluster: Redis unreachable; local limits and the last known homes are in force',
      );
    }
    for (const l of this.listeners) l(up);
  }

  private warnedAtStart = false;
}
