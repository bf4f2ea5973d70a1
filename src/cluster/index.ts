// A logmta cluster on Redis: the one entry point daemon.ts composes when [cluster] is set.
// Builds the Redis link, membership (heartbeats), domain homes, the router's redirects, the
// transfer of held mail to its home, and the node-to-node AUTH. The queue is used only through
// its facade (held counts, flushes); nothing here touches queue files.
// Invariant: Redis holds no mail, and nothing here waits for Redis on the mail path — a node
// whose Redis is gone goes on accepting and delivering with the last known homes and local
// limits. Start-up waits for Redis at most redis_timeout.
// Fails: startCluster never rejects for Redis trouble (it starts with what it has).
// Size (over 400 lines): the cluster's one composition root, wiring each part once; the parts
// themselves live in their own files.

import { join } from 'node:path';
import { type Config, type ClusterConfig, formatHostPort } from '../config/index.js';
import type { Logger } from '../log.js';
import type { HeldLocks } from '../odmr/index.js';
import type { Queues } from '../queue/index.js';
import type { ServerHooks } from '../smtp/server/hooks.js';
import type { Clock } from '../util/clock.js';
import { domainOf } from '../util/domain.js';
import { secretEquals } from '../util/secret-equal.js';
import { Directory, PEER_USER_PREFIX } from './directory.js';
import { Homes } from './homes.js';
import { Keys } from './keys.js';
import { Membership, type NodeRecord } from './membership.js';
import { RedisLink } from './redis.js';
import { Transfers } from './transfer.js';
import { Drain } from './drain.js';
import { optBool } from '../admin/protocol.js';
import type { OpHandler } from '../admin/ops.js';
import { clusterEtrnHook } from './etrn.js';
import {
  defineScripts,
  SharedAuthThrottle,
  SharedConnections,
  SharedGcra,
  SharedRate,
  takeWindow,
} from './limits.js';
import type { SharedWindowCount } from '../smtp/server/client-rates.js';
import type net from 'node:net';
import { Gauge, type Registry } from 'prom-client';
import type { EtrnService } from '../odmr/index.js';
import type { OdmrProviderOptions } from '../odmr/provider.js';
import { type AtrnLeg, serveLegs } from './atrn-proxy.js';
import { openAtrn } from './peer.js';

export { Directory, PEER_USER_PREFIX, parseAddress } from './directory.js';
export type { DrainStatus } from './drain.js';
export { Keys } from './keys.js';
export { readNodes, type NodeView } from './membership.js';
export { RedisLink } from './redis.js';
export { rendezvous } from './rendezvous.js';

export interface ClusterDeps {
  config: Config;
  queues: Queues;
  clock: Clock;
  log: Logger;
}

/** Whether an authenticated identity is a cluster peer. */
export function isPeer(user: string | undefined): boolean {
  return user?.startsWith(PEER_USER_PREFIX) === true;
}

/** The queue as the heartbeat reports it. */
function queueRecord(queues: Queues): Pick<NodeRecord, 'queue' | 'held'> {
  const lanes: Record<string, number> = {};
  for (const l of queues.laneDepths()) if (l.live > 0) lanes[l.lane] = l.live;
  const held: Record<string, number> = {};
  for (const d of queues.heldDomains()) held[d] = queues.heldCount(d);
  return { queue: { messages: queues.messageCount(), lanes }, held };
}

export class Cluster {
  readonly keys: Keys;
  readonly link: RedisLink;
  readonly membership: Membership;
  readonly homes: Homes;
  readonly directory: Directory;
  transfers: Transfers | undefined;
  readonly drain: Drain;
  /** The limits counted over the whole cluster (each falls back to local counting). */
  readonly limits: {
    etrnRate: SharedRate;
    odmrAuthRate: SharedRate;
    smtpAuth: SharedAuthThrottle;
    odmrAuth: SharedAuthThrottle;
    messageRate: SharedGcra | undefined;
    connections: SharedConnections | undefined;
  };
  private addresses: { smtp: string; odmr: string | undefined } = { smtp: '', odmr: undefined };
  private readonly startedAt: number;

  constructor(
    readonly config: ClusterConfig,
    private readonly d: ClusterDeps,
  ) {
    this.startedAt = d.clock.now();
    this.keys = new Keys(config.prefix);
    this.link = new RedisLink(config, d.log.child({ component: 'cluster' }));
    this.membership = new Membership({
      link: this.link,
      keys: this.keys,
      self: config.node,
      heartbeatMs: config.heartbeatMs,
      ttlMs: config.nodeTtlMs,
      clock: d.clock,
      cacheFile: join(d.config.dataDir, 'cluster-nodes.json'),
      onSaveError: (e) =>
        d.log.warn(
          { component: 'cluster', err: e instanceof Error ? e.message : String(e) },
          'cluster: cannot save the nodes cache',
        ),
      record: () => ({
        smtp: this.addresses.smtp,
        ...(this.addresses.odmr !== undefined ? { odmr: this.addresses.odmr } : {}),
        startedAt: this.startedAt,
        draining: this.directory.draining,
        ...queueRecord(d.queues),
      }),
    });
    this.homes = new Homes({
      link: this.link,
      keys: this.keys,
      self: config.node,
      candidates: () => this.membership.live({ withoutDraining: true }),
      cacheFile: join(d.config.dataDir, 'cluster-homes.json'),
      log: d.log.child({ component: 'cluster' }),
      setTimer: (ms, fn) => d.clock.setTimer(ms, fn),
      // After Redis (re)connects: one fresh read of the live nodes, and time for every node to
      // reconnect (2 s at most between attempts) and write back the homes it knows.
      claimWait: () => {
        const up = this.link.upSince;
        if (up === 0) return 0;
        const settle = up + 2 * config.heartbeatMs + 2_000 - Date.now();
        return Math.max(settle, this.membership.readAt >= up ? 0 : config.heartbeatMs, 0);
      },
    });
    this.directory = new Directory(config.node, config.secret, this.homes, this.membership);
    this.drain = new Drain({
      self: config.node,
      link: this.link,
      keys: this.keys,
      directory: this.directory,
      homes: this.homes,
      membership: this.membership,
      queues: d.queues,
      transfers: () => this.transfers,
      clock: d.clock,
      log: d.log.child({ component: 'cluster' }),
    });
    defineScripts(this.link.client);
    const cfg = d.config;
    const nodes = () => this.membership.live().length;
    this.limits = {
      etrnRate: new SharedRate(
        this.link,
        this.keys,
        'etrn',
        cfg.etrnLimits.requestsPerClient,
        cfg.etrnLimits.requestWindowMs,
        d.clock,
      ),
      odmrAuthRate: new SharedRate(
        this.link,
        this.keys,
        'odmr-auth',
        cfg.odmr.authPerMinute,
        60_000,
        d.clock,
      ),
      smtpAuth: new SharedAuthThrottle(this.link, this.keys, 'auth', d.clock, {
        maxFailures: cfg.smtp.authMaxFailures,
        blockMs: cfg.smtp.authBlockTimeMs,
        baseDelayMs: cfg.smtp.authFailureDelayMs,
        maxDelayMs: cfg.smtp.authFailureDelayMaxMs,
      }),
      odmrAuth: new SharedAuthThrottle(this.link, this.keys, 'odmr', d.clock),
      messageRate: config.messageRate
        ? new SharedGcra(this.link, this.keys, config.messageRate, d.clock, nodes)
        : undefined,
      connections:
        config.connectionsPerDestination > 0
          ? new SharedConnections(
              this.link,
              this.keys,
              config.connectionsPerDestination,
              config.node,
              d.clock,
              nodes,
            )
          : undefined,
    };
  }

  /** ATRN at any node: what the ODMR provider needs (peer AUTH, homes elsewhere, the splice). */
  odmr(): NonNullable<OdmrProviderOptions['cluster']> {
    const log = this.d.log.child({ component: 'cluster' });
    const timeoutMs = Math.max(5_000, this.config.redisTimeoutMs * 5);
    const name = this.d.config.hostname;
    return {
      peerSecret: (user) => (isPeer(user) ? this.config.secret : null),
      elsewhere: {
        split: (domains) => {
          const out = new Map<string, string[]>();
          for (const d of domains) {
            const home = this.directory.homeElsewhere(d);
            if (!home) continue;
            const list = out.get(home.node);
            if (list) list.push(d);
            else out.set(home.node, [d]);
          }
          return out;
        },
        open: async (remote) => {
          let trouble = false;
          const legs: AtrnLeg[] = [];
          await Promise.all(
            [...remote].map(async ([node, domains]) => {
              const target = this.directory.peer(node, 'odmr');
              if (!target) {
                trouble = true;
                log.warn({ node, domains }, 'atrn: no ODMR address known for the home');
                return;
              }
              try {
                const r = await openAtrn(target, domains, name, timeoutMs);
                if (r.code === 250 && r.socket) legs.push({ node, domains, socket: r.socket });
                else if (r.code !== 453) {
                  trouble = true;
                  log.warn({ node, domains, code: r.code, text: r.text }, 'atrn: the home refused');
                }
              } catch (e) {
                trouble = true;
                log.warn(
                  { node, domains, err: e instanceof Error ? e.message : String(e) },
                  'atrn: the home could not be asked',
                );
              }
            }),
          );
          // Served in a stable order (node name), so a customer sees the same order every time.
          legs.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
          return { legs, trouble };
        },
        drop: (legs) => {
          for (const l of legs as AtrnLeg[]) l.socket.destroy();
        },
      },
      serve: (socket, pending, legs, local) =>
        serveLegs(socket as net.Socket, pending, legs as AtrnLeg[], local, { timeoutMs: 300_000, log }),
    };
  }

  /** Prometheus figures of the cluster part (in the daemon's registry). */
  registerMetrics(registry: Registry): void {
    const stats = this.link.stats;
    const gauge = (name: string, help: string, value: () => number): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          this.set(value());
        },
      });
    };
    gauge('logmta_cluster_redis_up', '1 while the cluster Redis answers; 0 while limits are local', () =>
      this.link.up ? 1 : 0,
    );
    gauge('logmta_cluster_redis_commands_total', 'Redis commands sent by this node', () => stats.commands);
    gauge('logmta_cluster_redis_errors_total', 'Redis commands that failed or timed out', () => stats.errors);
    gauge('logmta_cluster_redis_outages_total', 'Times Redis became unreachable', () => stats.outages);
    gauge(
      'logmta_cluster_local_fallbacks_total',
      'Limit and home decisions taken locally because Redis was unreachable',
      () => stats.fallbacks,
    );
    gauge(
      'logmta_cluster_nodes_alive',
      'Nodes of the cluster alive (this one included)',
      () => this.membership.live().length,
    );
    gauge('logmta_cluster_draining', '1 while this node drains', () => (this.directory.draining ? 1 : 0));
  }

  /** The shared connection limit per destination for the pool (transfers to peers are not counted). */
  connectionGate(): { acquire(key: string): Promise<(() => void) | undefined> } | undefined {
    const c = this.limits.connections;
    if (!c) return undefined;
    const free = (): void => {};
    return { acquire: (key) => (key.startsWith('cluster:') ? Promise.resolve(free) : c.acquire(key)) };
  }

  /** The shared message rate per destination for the engine (transfers to peers are not counted). */
  rateBooking(): ((key: string, maxWaitMs: number) => Promise<number>) | undefined {
    const r = this.limits.messageRate;
    if (!r) return undefined;
    return (key, maxWaitMs) => (key.startsWith('cluster:') ? Promise.resolve(0) : r.book(key, maxWaitMs));
  }

  /**
   * [smtp]'s per-client rates over the cluster: one window per client and kind in Redis
   * (`limit:client-<kind>:<client>`), for ClientRates, whose own windows decide while Redis
   * does not answer.
   */
  clientRateCount(): SharedWindowCount {
    return (kind, client, rate) =>
      takeWindow(this.link, this.keys, `client-${kind}`, client, rate.count, rate.periodMs);
  }

  /** ETRN at any node: replaces the local hook (hooks.etrn) when ETRN domains exist. */
  etrnHook(service: EtrnService): ReturnType<typeof clusterEtrnHook> {
    return clusterEtrnHook({
      service,
      rate: this.limits.etrnRate,
      directory: this.directory,
      homes: this.homes,
      transfers: () => this.transfers,
      heldCount: (d) => this.d.queues.heldCount(d),
      name: this.d.config.hostname,
      timeoutMs: Math.max(5_000, this.config.redisTimeoutMs * 5),
      clock: this.d.clock,
      log: this.d.log.child({ component: 'cluster' }),
      isPeer,
    });
  }

  get node(): string {
    return this.config.node;
  }

  /** Connects to Redis (bounded wait), reads membership and homes. */
  async start(): Promise<void> {
    await this.link.start();
    await this.membership.refresh();
    await this.homes.start();
  }

  /** The node-to-node AUTH on top of the daemon's own: "cluster:<node>" with the shared secret. */
  serverHooks(inner: ServerHooks, heldDomainOf: (domain: string) => string | undefined): ServerHooks {
    const secret = this.config.secret;
    return {
      ...inner,
      accept: (m, ctx) => {
        // A peer passing us mail of a domain we think it is the home of: hold it here for now.
        const user = ctx?.client.auth;
        if (isPeer(user)) {
          const from = user!.slice(PEER_USER_PREFIX.length);
          for (const r of m.recipients) {
            const d = heldDomainOf(domainOf(r.address));
            if (d !== undefined && this.homes.homeOf(d) === from) {
              this.d.log.warn(
                { domain: d, from },
                'cluster: a peer sent mail of a domain homed there; held here',
              );
              this.directory.disagreement(d, 4 * this.config.transferIntervalMs);
            }
          }
        }
        return inner.accept(m, ctx);
      },
      cramSecret: (user, ctx) => (isPeer(user) ? secret : (inner.cramSecret?.(user, ctx) ?? null)),
      verifyPassword: (user, password, ctx) =>
        isPeer(user)
          ? secretEquals(secret, password)
          : (inner.verifyPassword?.(user, password, ctx) ?? false),
    };
  }

  /** Starts the transfer of held mail to its home (needs the lanes' locks of the ETRN/ODMR part). */
  startTransfers(locks: HeldLocks): void {
    const t = new Transfers({
      lanes: this.d.queues,
      locks,
      away: (domain) => this.directory.homeElsewhere(domain) !== undefined,
      upSince: (domain) => {
        const home = this.homes.homeOf(domain);
        return home !== undefined && this.membership.isAlive(home) ? this.d.clock.now() : undefined;
      },
      clock: this.d.clock,
      intervalMs: this.config.transferIntervalMs,
      log: this.d.log.child({ component: 'cluster' }),
    });
    this.transfers = t;
    t.start();
    // A home learnt or changed: what this node holds for it goes there.
    this.homes.onChange((domain) => void t.kick(domain));
    // A node came alive: what waits here for the domains it is home of goes now, past the
    // dead-host marks of its downtime.
    this.membership.onChange((alive) => {
      if (alive.length > 0) t.sweep(this.d.clock.now());
    });
    t.sweep();
  }

  /**
   * Tells `fn` the SMTP address of each peer whose heartbeat shows it (back) alive, so that the
   * delivery pool forgets the dead-host mark of its downtime: a drain's mail and transfers go to
   * a restarted node at once instead of after the mark expires.
   */
  onPeerBack(fn: (host: string, port: number) => void): void {
    this.membership.onChange((alive) => {
      for (const n of alive) {
        const p = n === this.config.node ? undefined : this.directory.peer(n);
        if (p) fn(p.host, p.port);
      }
    });
  }

  /** Once the listeners are bound: where peers reach us; heartbeats start. */
  async announce(addresses: { smtp: string; odmr: string | undefined }): Promise<void> {
    const c = this.config;
    this.addresses = {
      smtp: c.advertise ? formatHostPort(c.advertise) : addresses.smtp,
      odmr: c.odmrAdvertise ? formatHostPort(c.odmrAdvertise) : addresses.odmr,
    };
    await this.membership.start();
    await this.drain.resume();
  }

  /** Control-socket ops: cluster.drain ({on}), cluster.drain.status, cluster.view. */
  ops(): ReadonlyMap<string, OpHandler> {
    return new Map<string, OpHandler>([
      ['cluster.drain', async (args) => (optBool(args, 'on') ? this.drain.start() : this.drain.stop())],
      ['cluster.drain.status', async () => this.drain.status()],
      ['cluster.view', async () => this.view()],
    ]);
  }

  /** This node's view of the cluster (dashboard, ops): nodes, homes, Redis. */
  view(): Record<string, unknown> {
    return {
      node: this.node,
      redis: { up: this.link.up, ...this.link.stats },
      draining: this.directory.draining,
      nodes: [...this.membership.nodes().values()],
      homes: Object.fromEntries(this.homes.all()),
    };
  }

  async stop(): Promise<void> {
    this.drain.close();
    this.transfers?.stop();
    this.limits.connections?.stop();
    this.homes.stop();
    await this.membership.stop();
    await this.link.close();
  }
}
