// The composition root: the one place that builds and wires every part of a running logmta
// from a Config. Start-up is recovery (Queues.open); there is no shutdown state to save
// (crash-only): stop() closes listeners, gives in-flight transactions a grace period, and returns.
// Invariant: startDaemon either returns a running daemon or rejects having stopped everything
// it had started (queue runners, listeners, timers), so a failed start — a port already taken —
// leaves nothing running in the process and the next start on the same data works.
// Size (over 400 lines): the composition root is one on purpose (STYLE.md): every part is built and
// wired here and nowhere else.
import { mkdirSync } from 'node:fs';
import { registerDashboard } from './admin/dashboard.js';
import { EventBus } from './admin/events.js';
import { logEvents } from './admin/events-log.js';
import { makeInjector } from './admin/inject.js';
import { Metrics, registerMetricsRoute } from './admin/metrics.js';
import { type AdminServer, startAdmin } from './admin/server.js';
import { clearStale, probe } from './admin/socket.js';
import { recoveryProgress } from './cli/progress.js';
import type { Cluster } from './cluster/index.js';
import { type Config, configNotices } from './config/index.js';
import { DeliveryEngine } from './delivery/engine.js';
import { MaildirWriter } from './delivery/maildir.js';
import { describeDane } from './delivery/dane/trust.js';
import { DnsClient } from './dns/client.js';
import type { DnsResolver } from './dns/types.js';
import { ConnectionPool } from './delivery/pool.js';
import { makeReporter } from './delivery/reports.js';
import { Router } from './delivery/router.js';
import { SelfAddresses } from './delivery/self.js';
import { fetchPolicy } from './delivery/mta-sts/fetch.js';
import { StsPolicies } from './delivery/mta-sts/policies.js';
import { PolicyStore } from './delivery/mta-sts/store.js';
import { outboundTrust } from './delivery/tls-trust.js';
import type { Logger } from './log.js';
import { startEtrnOdmr } from './odmr/index.js';
import { IdSource, lockQueueDirWaiting, MemoryBudget, type QueueLock, Queues } from './queue/index.js';
import { buildIntake, buildListeners, shownAddress } from './sessions/intake.js';
import type { SessionThread, SessionThreadSlot } from './sessions/thread-host.js';
import type { SmtpListener } from './smtp/server/listener.js';
import { errorText } from './errors.js';
import { type Clock, systemClock } from './util/clock.js';
import type { ListenSockets } from './util/listen-sockets.js';

export interface DaemonDeps {
  clock?: Clock;
  resolver?: DnsResolver;
  random?: () => number;
  /** Port used for MX hosts (default 25); tests point it at a sink. */
  mxPort?: number;
  /** How long an unreachable host is skipped (default 60 s). */
  deadHostMs?: number;
  logger: Logger;
  /** Benchmark-only: no fdatasync. */
  sync?: boolean;
  /** Event bus to use (tests subscribe to it); one is made when absent. */
  events?: EventBus;
  /**
   * Listening sockets kept across restarts in place (`logmta serve`'s reload): the SMTP and ODMR
   * listeners and the control socket attach to these instead of binding their own, and leave
   * them open when they stop.
   */
  listenSockets?: ListenSockets;
  /** The SMTP session thread kept across restarts in place (smtp.session_thread), as listenSockets. */
  sessionThreads?: SessionThreadSlot;
}

export interface Daemon {
  config: Config;
  queues: Queues;
  engine: DeliveryEngine;
  pool: ConnectionPool;
  /** The resolver every lookup goes through ([dns], or the one injected). */
  resolver: DnsResolver;
  listeners: SmtpListener[];
  /** Addresses actually bound (port 0 resolved), by role. */
  addresses: { smtp: string[]; submission: string[]; submissions: string[]; odmr: string[] };
  /** The control interface (socket, optional HTTP); registerRoute adds HTTP endpoints. */
  admin: AdminServer;
  /** Structured events (received, attempts, outcomes, operator actions, ETRN/ATRN): emit and subscribe. */
  events: EventBus;
  /** Prometheus metrics (GET /metrics on the HTTP admin listener) and the dashboard's figures. */
  metrics: Metrics;
  /** The cluster part ([cluster]); undefined on a single node. */
  cluster: Cluster | undefined;
  /** The one source of queue ids of this process: whoever makes ids for the queue uses it. */
  ids: IdSource;
  /** The SMTP session thread (smtp.session_thread), or undefined when the sessions run here. */
  sessionThread: SessionThread | undefined;
  stop(graceMs?: number): Promise<void>;
}

function dnsClient(config: Config, clock: Clock): DnsClient {
  const d = config.dns;
  return new DnsClient({
    ...(d.servers.length > 0 ? { servers: d.servers } : {}),
    timeoutMs: d.timeoutMs,
    attempts: d.attempts,
    cacheSize: d.cacheSize,
    maxTtlMs: d.maxTtlMs,
    maxNegativeTtlMs: d.maxNegativeTtlMs,
    dnssec: d.dnssec,
    clock,
  });
}

export async function startDaemon(config: Config, deps: DaemonDeps): Promise<Daemon> {
  const clock = deps.clock ?? systemClock;
  const log = deps.logger;
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  // With the SMTP sessions in a thread of their own, ids come from one cell both threads share.
  const ids = config.smtp.sessionThread
    ? IdSource.shared(() => clock.now())
    : new IdSource(() => clock.now());
  const t0 = Date.now();
  const events = deps.events ?? new EventBus(() => clock.now());
  events.onListenerError = (e) => log.error({ err: e }, 'event listener failed');
  const stopEventLog = logEvents(events, log);
  // What a failed start must undo, in the order it was started (undone in reverse).
  const undo: (() => unknown)[] = [stopEventLog];
  try {
    return await startParts(config, deps, { clock, log, ids, t0, events, stopEventLog, undo });
  } catch (e) {
    log.error({ err: errorText(e) }, 'start failed; stopping what was started');
    for (const u of undo.reverse()) {
      try {
        await u();
      } catch (err) {
        log.warn({ err: errorText(err) }, 'stopping a part after a failed start failed');
      }
    }
    throw e;
  }
}

interface StartContext {
  clock: Clock;
  log: Logger;
  ids: IdSource;
  t0: number;
  events: EventBus;
  stopEventLog: () => void;
  undo: (() => unknown)[];
}

/**
 * Crash-only bound on stopping the queues: a delivery in flight after `ms` is abandoned (its
 * outcome is refused; recovery redoes it). When this resolves the queues do no more I/O.
 */
async function stopQueues(queues: Queues, ms: number): Promise<void> {
  await Promise.race([queues.stop(), new Promise<void>((r) => setTimeout(r, ms).unref())]);
  await queues.close();
}

async function startParts(config: Config, deps: DaemonDeps, cx: StartContext): Promise<Daemon> {
  const { clock, log, ids, t0, events, stopEventLog, undo } = cx;
  const progress = recoveryProgress({ log });
  // One daemon per queue directory: a lock the kernel frees when the holder dies (lock.ts).
  const locks: QueueLock[] = [];
  // A holder on its way out (an upgrade: the old daemon stopped and this one started at once)
  // is waited for; a running one refuses this start (lock.ts, lockQueueDirWaiting).
  for (const dir of config.queue.paths) {
    locks.push(
      await lockQueueDirWaiting(dir, {
        holderAnswers: () => probe(config.admin.socket),
        onWait: (pid) =>
          log.warn(
            { queue: dir, ...(pid !== undefined ? { pid } : {}) },
            'queue directory in use by a daemon that is stopping; waiting for it to exit',
          ),
      }),
    );
    undo.push(() => locks.pop()?.release());
  }
  // Another daemon answering on our control socket means this data dir is in use. (A stale
  // socket left by a crash is removed: only once we hold the queues, or a daemon starting at the
  // same moment could lose its fresh socket to our clean-up. The socket this process keeps
  // across a reload is neither.)
  await clearStale(config.admin.socket, deps.listenSockets);
  // Reports from a domain with a [[dkim]] key are signed when built (auth/report-sign.ts); the
  // metrics that count the signatures exist only once the queues do.
  let countReportSignature: ((algorithm: string) => void) | undefined;
  const signReport =
    config.dkim.length > 0
      ? (await import('./auth/report-sign.js')).makeReportSigner({
          keys: config.dkim,
          logger: log.child({ component: 'dkim' }),
          onSigned: (algorithm) => countReportSignature?.(algorithm),
        })
      : undefined;
  const queues = await Queues.open(config.queue.paths, {
    clock,
    ids,
    retry: config.queue.retryMs,
    maxAge: config.queue.maxAgeMs,
    delayWarning: config.queue.delayWarningMs > 0 ? config.queue.delayWarningMs : Number.MAX_SAFE_INTEGER,
    segmentSize: config.queue.segmentSize,
    reserve: config.queue.reserve,
    spareSegments: config.queue.spareSegments,
    onStorage: (ev) => {
      const fields = { queue: ev.queue, state: ev.state, ...(ev.error ? { err: errorText(ev.error) } : {}) };
      if (ev.state === 'accepting' || ev.state === 'reopened') log.warn(fields, ev.message);
      else log.error(fields, ev.message);
    },
    // Enough deliveries in flight for a flush to keep every connection to its destination busy.
    flushConcurrency: Math.max(64, 2 * config.delivery.concurrencyPerDestination),
    budget: config.smtp.sessionThread
      ? MemoryBudget.shared(config.queue.memoryBudget)
      : new MemoryBudget(config.queue.memoryBudget),
    sync: deps.sync ?? true,
    hooks: {
      reports: makeReporter(config.hostname, signReport),
      maxAgeFor: (domain) =>
        config.etrn.find((e) => e.domain === domain)?.maxAgeMs ??
        config.odmr.accounts.find((a) => domain !== undefined && a.domains.includes(domain))?.maxAgeMs ??
        config.queue.maxAgeMs,
      onEvent: events.fromQueue,
    },
    onProgress: progress.onProgress,
  });
  undo.push(() => stopQueues(queues, 2_000));
  progress.finish();
  for (const [i, r] of queues.recovery.entries()) {
    log.info(
      {
        queue: config.queue.paths[i],
        ms: Math.round(r.ms),
        segments: r.segments,
        bytes: r.bytes,
        records: r.records,
        messages: r.liveMessages,
        pieces: r.livePieces,
        tornTails: r.tornTails.length,
        corruptions: r.corruptions.length,
        repaired: r.repaired,
        orphanData: r.orphanData,
        spares: r.spares,
      },
      'recovered queue',
    );
    for (const c of r.corruptions) log.error({ ...c }, 'corrupt segment set aside');
    for (const m of r.missingSegments) log.error({ segment: m }, 'segment missing from lane');
    if (r.missingData.length > 0)
      log.error(
        { ids: r.missingData.slice(0, 20), count: r.missingData.length },
        'messages whose data is missing',
      );
  }
  // Every lookup (MX routing, probes, SPF/DKIM/DMARC, DNSBL) goes through this one resolver.
  const resolver = deps.resolver ?? dnsClient(config, clock);
  // Our own listeners are never a next hop (a backup MX must not relay to itself, nor a route
  // point at us): known from the configuration now, and from the bound addresses below for port 0.
  const self = new SelfAddresses();
  for (const hp of [...config.smtp.listen, ...config.smtp.submission, ...config.smtp.submissions])
    self.add(hp.host, hp.port);
  const router = new Router(config, resolver, deps.random ?? Math.random, deps.mxPort ?? 25, self.has);
  // A cluster ([cluster]): loaded only when configured. Started before the listeners, so that
  // the first message already finds the domain homes (start-up waits for Redis at most
  // cluster.redis_timeout; without Redis the node runs on the last known homes).
  let cluster: Cluster | undefined;
  if (config.cluster) {
    const { Cluster } = await import('./cluster/index.js');
    cluster = new Cluster(config.cluster, { config, queues, clock, log });
    undo.push(() => cluster?.stop());
    await cluster.start();
    router.setRedirects(cluster.directory);
  }
  const pool = new ConnectionPool({
    clientOptions: {
      name: config.hostname,
      clock,
      timeouts: { connect: config.delivery.connectTimeoutMs, greeting: config.delivery.greetingTimeoutMs },
    },
    perDestination: config.delivery.concurrencyPerDestination,
    perHost: config.delivery.concurrencyPerHost,
    global: config.delivery.maxConnections,
    deadHostMs: deps.deadHostMs ?? 60_000,
    idleMs: 5_000,
    reuseMs: config.delivery.connectionReuseTimeMs,
    clock,
    ...(cluster?.connectionGate() ? { gate: cluster.connectionGate()! } : {}),
    isSelf: self.has,
  });
  undo.push(() => pool.close());
  cluster?.onPeerBack((host, port) => pool.markAlive(host, port));
  // Certificate checks of outbound TLS, and receivers' MTA-STS policies (cached in data_dir, so
  // that a restart keeps enforcing what it knew).
  const trust = outboundTrust(config.delivery.tlsCa);
  let sts: StsPolicies | undefined;
  if (config.delivery.mtaSts) {
    const stsLog = log.child({ component: 'mta-sts' });
    sts = new StsPolicies({
      resolver,
      clock,
      fetch: (domain) => fetchPolicy(domain, { resolver, ca: trust.ca }),
      store: new PolicyStore(config.dataDir, (f, m) => stsLog.warn(f, m)),
      log: stsLog,
    });
  }
  // DANE applies only where the resolver's DNSSEC validation is believed: say so at start.
  if (config.delivery.dane && deps.resolver === undefined) log.info({ dane: describeDane(config) }, 'DANE');
  const maildir = new MaildirWriter({ clock, hostname: config.hostname });
  const engine = new DeliveryEngine(
    router,
    pool,
    async (data, t) => {
      await maildir.deliver(data, {
        maildirPath: t.maildir,
        returnPath: t.returnPath,
        deliveredTo: t.deliveredTo,
      });
    },
    {
      attempt: events.fromAttempt,
    },
    cluster?.rateBooking(),
    { trust, ...(sts ? { sts } : {}) },
  );
  const metrics = new Metrics({ bus: events, queues, pool, now: () => clock.now() });
  countReportSignature = (algorithm) => metrics.dkimSigned(algorithm);
  cluster?.registerMetrics(metrics.registry);
  undo.push(() => metrics.close());
  queues.setDeliverer(events.wrapDeliverer(engine.deliver));
  queues.start();

  for (const k of config.dkim)
    log.info(
      { name: `${k.selector}._domainkey.${k.domain}`, algorithm: k.algorithm, record: k.record },
      'dkim key',
    );
  // The intake (sessions/intake.ts): the SMTP server's hooks from the configuration. Local
  // submission (sendmail, below) uses them without [[access]] and without the events' client
  // facts, so its mail is counted and logged as source "local".
  const intake = await buildIntake({
    config,
    router,
    queue: queues,
    ids,
    resolver,
    clock,
    log,
    counts: metrics,
    ...(cluster ? { cluster } : {}),
  });
  const filteredHooks = intake.local;
  const hooks = events.wrapServerHooks(intake.smtp);
  // ETRN hook, probes, ODMR provider listeners and pollers (before the SMTP listeners open).
  const odmr = await startEtrnOdmr(config, {
    queues,
    hooks,
    clock,
    logger: log,
    resolver,
    ...(deps.random ? { random: deps.random } : {}),
    ...(deps.mxPort !== undefined ? { mxPort: deps.mxPort } : {}),
    isSelf: self.has,
    onReachable: (host, port) => pool.markAlive(host, port),
    emit: (ev) => events.emit(ev),
    ...(deps.listenSockets ? { listenSockets: deps.listenSockets } : {}),
    ...(cluster
      ? {
          shared: {
            etrnRate: cluster.limits.etrnRate,
            odmrAuthRate: cluster.limits.odmrAuthRate,
            odmrAuthThrottle: cluster.limits.odmrAuth,
          },
          odmrCluster: cluster.odmr(),
        }
      : {}),
  });
  undo.push(() => odmr.stop(0));
  if (cluster) {
    cluster.startTransfers(odmr.etrn.locks);
    if (config.etrn.length > 0) hooks.etrn = cluster.etrnHook(odmr.etrn);
  }
  for (const p of odmr.providers) metrics.addListener(p.listener);
  const listeners: SmtpListener[] = [];
  const addresses = {
    smtp: [] as string[],
    submission: [] as string[],
    submissions: [] as string[],
    odmr: odmr.addresses,
  };
  // The SMTP sessions: in a worker thread of their own (smtp.session_thread), or here.
  let sessionThread: SessionThread | undefined;
  if (config.smtp.sessionThread) {
    // Switched on by a reload: the SMTP ports this process held on the main thread are given up
    // (the thread binds its own), once. Only those: the control socket, detached between two
    // daemons, keeps the requests waiting on it for this daemon's admin server.
    const { smtp } = config;
    for (const hp of [...smtp.listen, ...smtp.submission, ...smtp.submissions])
      deps.listenSockets?.release(hp.host, hp.port, `421 4.3.2 ${config.hostname} Service shutting down\r\n`);
    const { SessionThread } = await import('./sessions/thread-host.js');
    sessionThread = await SessionThread.start(
      {
        config,
        queues,
        ids,
        budget: queues.budget,
        hooks,
        resolver,
        events,
        counts: metrics,
        log,
      },
      deps.sessionThreads,
    );
    const t = sessionThread;
    undo.push(() => t.stop(0));
    metrics.addListener(t.sessions);
    for (const b of t.bound) {
      self.add(b.address, b.port);
      addresses[b.role].push(shownAddress(b.address, b.port));
    }
  }
  // Switched off by a reload: the kept thread ends, and its ports with it, before ours bind.
  if (!config.smtp.sessionThread) await deps.sessionThreads?.close();
  for (const b of config.smtp.sessionThread
    ? []
    : await buildListeners({
        config,
        hooks,
        clock,
        log,
        ...(cluster ? { cluster } : {}),
        ...(deps.listenSockets ? { listenSockets: deps.listenSockets } : {}),
        started: (l) => undo.push(() => l.stop(0)),
      })) {
    listeners.push(b.listener);
    metrics.addListener(b.listener);
    self.add(b.address, b.port);
    addresses[b.role].push(shownAddress(b.address, b.port));
  }
  const admin = await startAdmin({
    config: config.admin,
    logger: log,
    maxMessageSize: config.smtp.maxMessageSize,
    ...(deps.listenSockets ? { sockets: deps.listenSockets } : {}),
    deps: {
      queues,
      clock,
      inject: makeInjector({
        hostname: config.hostname,
        hooks: filteredHooks,
        clock,
        maxMessageSize: config.smtp.maxMessageSize,
      }),
      isOdmrDomain: (domain) => router.odmrDomainOf(domain) !== undefined,
      onFlush: () => {
        const n = pool.markAllAlive();
        if (n > 0) log.info({ hosts: n }, 'flush: dead-host marks cleared');
      },
      ...(cluster ? { extra: () => cluster.ops() } : {}),
      info: () => ({
        hostname: config.hostname,
        dataDir: config.dataDir,
        smtp: addresses.smtp,
        submission: addresses.submission,
        submissions: addresses.submissions,
      }),
    },
  });
  undo.push(() => admin.close());
  await cluster?.announce({ smtp: addresses.smtp[0] ?? '', odmr: addresses.odmr[0] });
  registerMetricsRoute(admin, metrics);
  registerDashboard(admin, {
    metrics,
    queues,
    info: () => ({ hostname: config.hostname, smtp: addresses.smtp, startedAt: t0 }),
    ...(cluster ? { cluster: () => cluster.view() } : {}),
  });
  log.info(
    {
      ms: Date.now() - t0,
      smtp: addresses.smtp,
      submission: addresses.submission,
      submissions: addresses.submissions,
      dataDir: config.dataDir,
    },
    'logmta started',
  );
  for (const notice of configNotices(config)) log.warn({ notice }, 'configuration notice');

  return {
    config,
    queues,
    engine,
    pool,
    resolver,
    listeners,
    addresses,
    admin,
    events,
    metrics,
    cluster,
    ids,
    sessionThread,
    async stop(graceMs = 5_000) {
      // One grace for the whole stop: sessions finishing their transaction and deliveries in
      // flight share it (they run at the same time), so the stop is over within graceMs.
      const end = Date.now() + graceMs;
      // A daemon started on this queue from now on waits for the lock instead of giving up.
      for (const l of locks) l.markStopping();
      // No delivery starts from now on: one begun during the grace would only be cut at its end
      // and made again after the restart. Mail still accepted waits in the queue.
      queues.halt();
      // Nor does a message waiting for a connection get one: it has sent nothing, and is left
      // for the next start as it is (no deferral written).
      pool.stopAcquiring();
      // No request is taken from now on; those under way are answered within the grace (with
      // the socket kept across a reload, later ones wait for the next daemon).
      const adminClosed = admin.close(graceMs);
      await cluster?.stop();
      await Promise.all([
        adminClosed,
        ...listeners.map((l) => l.stop(graceMs)),
        sessionThread?.stop(graceMs),
        odmr.stop(graceMs),
      ]);
      // Crash-only: a delivery still in flight after the grace period is abandoned (recovery
      // redoes it); a peer that stalls must not hold shutdown for its 5-minute timeout.
      await stopQueues(queues, Math.max(0, end - Date.now()));
      for (const l of locks) l.release();
      pool.close();
      log.info({ ...engine.stats, ...pool.stats }, 'stopped');
      metrics.close();
      stopEventLog();
    },
  };
}
