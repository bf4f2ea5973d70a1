// The composition root: the one place that builds and wires every part of a running logmta
// from a Config. Start-up is recovery (Queues.open); there is no shutdown state to save
// (crash-only): stop() closes listeners, gives in-flight transactions a grace period, and returns.
import { mkdirSync } from 'node:fs';
import type { Config } from './config/index.js';
import { DeliveryEngine } from './delivery/engine.js';
import { MaildirWriter } from './delivery/maildir.js';
import { systemResolver, type DnsResolver } from './delivery/mx.js';
import { ConnectionPool } from './delivery/pool.js';
import { makeReporter } from './delivery/reports.js';
import { Router } from './delivery/router.js';
import type { Logger } from './log.js';
import { makeServerHooks } from './policy/hooks.js';
import { IdSource } from './queue/ids.js';
import { Queues } from './queue/queues.js';
import type { QueueEvent } from './queue/types.js';
import { SmtpListener } from './smtp/server/listener.js';
import { type Clock, systemClock } from './util/clock.js';

export interface DaemonDeps {
  clock?: Clock;
  resolver?: DnsResolver;
  random?: () => number;
  logger: Logger;
  /** Benchmark-only: no fdatasync. */
  sync?: boolean;
}

export interface Daemon {
  config: Config;
  queues: Queues;
  engine: DeliveryEngine;
  pool: ConnectionPool;
  listeners: SmtpListener[];
  /** Addresses actually bound (port 0 resolved), by role. */
  addresses: { smtp: string[]; submission: string[] };
  stop(graceMs?: number): Promise<void>;
}

export async function startDaemon(config: Config, deps: DaemonDeps): Promise<Daemon> {
  const clock = deps.clock ?? systemClock;
  const log = deps.logger;
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const ids = new IdSource(() => clock.now());
  const t0 = Date.now();
  const queues = await Queues.open(config.queue.paths, {
    clock,
    ids,
    retry: config.queue.retryMs,
    maxAge: config.queue.maxAgeMs,
    delayWarning: config.queue.delayWarningMs > 0 ? config.queue.delayWarningMs : Number.MAX_SAFE_INTEGER,
    segmentSize: config.queue.segmentSize,
    sync: deps.sync ?? true,
    hooks: {
      report: makeReporter(config.hostname, config.queue.maxAgeMs),
      maxAgeFor: (domain) =>
        config.etrn.find((e) => e.domain === domain)?.maxAgeMs ??
        config.odmr.accounts.find((a) => domain !== undefined && a.domains.includes(domain))?.maxAgeMs ??
        config.queue.maxAgeMs,
      onEvent: (ev: QueueEvent) => logQueueEvent(log, ev),
    },
    onProgress: (done, total) => {
      if (total > 256 * 1024 * 1024) log.info({ done, total }, 'recovery progress');
    },
  });
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
      },
      'recovered queue',
    );
    for (const c of r.corruptions) log.error({ ...c }, 'corrupt segment set aside');
    for (const m of r.missingSegments) log.error({ segment: m }, 'segment missing from lane');
    if (r.missingData.length > 0) log.error({ ids: r.missingData.slice(0, 20), count: r.missingData.length }, 'messages whose data is missing');
  }
  const router = new Router(config, deps.resolver ?? systemResolver(), deps.random ?? Math.random);
  const pool = new ConnectionPool({
    clientOptions: { name: config.hostname, clock },
    perDestination: config.delivery.concurrencyPerDestination,
    global: config.delivery.maxConnections,
    deadHostMs: 60_000,
    idleMs: 5_000,
    clock,
  });
  const maildir = new MaildirWriter({ clock, hostname: config.hostname });
  const engine = new DeliveryEngine(router, pool, async (data, t) => {
    await maildir.deliver([data], { maildirPath: t.maildir, returnPath: t.returnPath, deliveredTo: t.deliveredTo });
  }, {
    attempt: (ev) => log.info({ ...ev }, 'delivery attempt'),
  });
  queues.setDeliverer(engine.deliver);
  queues.start();

  const hooks = makeServerHooks(config, router, queues, ids);
  const listeners: SmtpListener[] = [];
  const addresses = { smtp: [] as string[], submission: [] as string[] };
  const tls = config.tls ? { key: config.tls.key, cert: config.tls.cert } : undefined;
  for (const [role, list] of [['smtp', config.smtp.listen], ['submission', config.smtp.submission]] as const) {
    for (const hp of list) {
      const l = new SmtpListener({
        hostname: config.hostname,
        maxMessageSize: config.smtp.maxMessageSize,
        maxRecipients: config.smtp.maxRecipients,
        maxConnections: config.smtp.maxConnections,
        maxPerIp: config.smtp.maxConnectionsPerIp,
        idleTimeoutMs: config.smtp.idleTimeoutMs,
        allowPlainWithoutTls: config.smtp.allowPlainAuthWithoutTls,
        submission: role === 'submission',
        clock,
        ...(tls ? { tls } : {}),
      }, hooks);
      const addr = await l.listen(hp.port, hp.host);
      listeners.push(l);
      addresses[role].push(`${addr.address.includes(':') ? `[${addr.address}]` : addr.address}:${addr.port}`);
    }
  }
  log.info({ ms: Date.now() - t0, smtp: addresses.smtp, submission: addresses.submission, dataDir: config.dataDir }, 'logmta started');

  return {
    config,
    queues,
    engine,
    pool,
    listeners,
    addresses,
    async stop(graceMs = 5_000) {
      await Promise.all(listeners.map((l) => l.stop(graceMs)));
      await queues.stop();
      pool.close();
    },
  };
}

function logQueueEvent(log: Logger, ev: QueueEvent): void {
  switch (ev.type) {
    case 'accepted':
      log.info({ id: ev.id, size: ev.size, recipients: ev.recipients }, 'queued');
      break;
    case 'delivered':
    case 'failed':
    case 'deferred':
      log.info({ id: ev.id, rcpt: ev.rcpt, code: ev.code, text: ev.text, relay: ev.host }, ev.type);
      break;
    case 'expired':
      log.warn({ id: ev.id, rcpt: ev.rcpt }, 'expired');
      break;
    case 'moved':
      log.debug({ id: ev.id, lane: ev.lane }, 'moved');
      break;
    case 'admin':
      log.info({ id: ev.id, action: ev.action }, 'operator action');
      break;
    case 'segment-unlinked':
      log.debug({ lane: ev.lane, seq: ev.seq }, 'segment unlinked');
      break;
  }
}
