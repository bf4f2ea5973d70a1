// Prometheus metrics of one daemon, in a private prom-client Registry (never the global default
// registry, so several daemons can run in one process, as the tests do). Counters and
// histograms are fed by the event bus and the queues' onBatch subscription; gauges are
// read at scrape time from the live state (metrics-snapshot.ts). Also keeps the small
// per-destination table the dashboard shows (busiest and failing destinations).
// Invariant: label values come from bounded sets (lane names, held domains, pool keys, at most
// MAX_DESTINATIONS recipient domains); a message id or an error text is never a label.
// Failure: a scrape that throws answers 500 (routes.ts); metrics never affect mail flow.
// Size (over 400 lines): the metric definitions are a long flat list, one block per metric, with no
// logic to split off.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EventBus, MtaEvent } from './events.js';
import { type DaemonSnapshot, type ObservedParts, takeSnapshot } from './metrics-snapshot.js';
import type { RouteRegistry } from './routes.js';
import { domainOf } from '../util/domain.js';

const MAX_DESTINATIONS = 500;
/** Result words of RFC 8601 (and mailauth's "temperror"/"permerror"): the bounded label set. */
const AUTH_RESULTS = new Set([
  'pass',
  'fail',
  'softfail',
  'neutral',
  'none',
  'temperror',
  'permerror',
  'policy',
]);
const SNAPSHOT_TTL_MS = 250;

export interface DestinationStats {
  destination: string;
  attempts: number;
  delivered: number;
  deferred: number;
  failed: number;
  lastError?: string;
  lastErrorAt?: number;
  /** Queue id of the message that got the last error (a link into `queue show`). */
  lastErrorId?: string;
  lastAt: number;
}

/** Cumulative figures the dashboard turns into rates (client-side differences between polls). */
export interface Totals {
  received: number;
  receivedBytes: number;
  delivered: number;
  deferred: number;
  failed: number;
  expired: number;
  attempts: number;
  batches: number;
  batchRecords: number;
  syncs: number;
  syncMsSum: number;
  syncMsMax: number;
}

/** What the metrics read of an SMTP listener (or of the session thread's, thread-host.ts). */
export interface SessionCounting {
  readonly connections: { readonly size: number };
  readonly server: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
}

export interface MetricsOptions extends Omit<ObservedParts, 'listeners'> {
  bus: EventBus;
  /** SMTP listeners known now; more can be added with addListener(). */
  listeners?: readonly SessionCounting[];
  /** Node process metrics (CPU, memory, event loop lag); default true. */
  processMetrics?: boolean;
}

/**
 * Node's process metrics (prom-client's defaults), collected once per process and shown by every
 * Metrics: each collection keeps an event-loop-delay histogram and a GC observer running for the
 * life of the process, so the daemon a reload starts must not add another set (it leaked about
 * 0.4 MiB a reload).
 */
let processRegistry: Registry | undefined;
function processMetricsRegistry(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

export class Metrics {
  /** This daemon's own metrics (the process metrics are added at scrape time). */
  readonly registry = new Registry();
  readonly totals: Totals = {
    received: 0,
    receivedBytes: 0,
    delivered: 0,
    deferred: 0,
    failed: 0,
    expired: 0,
    attempts: 0,
    batches: 0,
    batchRecords: 0,
    syncs: 0,
    syncMsSum: 0,
    syncMsMax: 0,
  };
  /** By recipient domain, least recently used first. */
  private readonly dests = new Map<string, DestinationStats>();
  private readonly failureLabels = new Set<string>();
  private cached: DaemonSnapshot | undefined;
  private readonly detach: Array<() => void> = [];
  private readonly listeners: SessionCounting[] = [];
  private readonly sessionsTotal: Counter;
  private readonly authResults: Counter;
  private readonly dnsblListings: Counter;
  private readonly dkimSignatures: Counter;

  constructor(private readonly o: MetricsOptions) {
    const registers = [this.registry];
    const snap = () => this.snapshot();
    if (o.processMetrics !== false) processMetricsRegistry();

    // --- counters fed by events
    const received = new Counter({
      name: 'logmta_messages_received_total',
      help: 'Messages accepted into the queue (250 sent), by source (smtp, local).',
      labelNames: ['source'],
      registers,
    });
    const receivedBytes = new Counter({
      name: 'logmta_received_bytes_total',
      help: 'Bytes of message data accepted into the queue.',
      registers,
    });
    const outcomes = new Counter({
      name: 'logmta_recipients_total',
      help: 'Committed per-recipient outcomes: delivered, deferred, failed (permanent: bounced to the sender), expired.',
      labelNames: ['outcome'],
      registers,
    });
    const attempts = new Counter({
      name: 'logmta_delivery_attempts_total',
      help: 'Delivery attempts per recipient, by result status and route kind (local, remote, odmr).',
      labelNames: ['status', 'route'],
      registers,
    });
    const mtaSts = new Counter({
      name: 'logmta_mta_sts_attempts_total',
      help: 'MX delivery attempts per recipient by the MTA-STS mode of the domain (none: no policy) and whether the connection met the policy (an enforce failure was deferred; a testing one was delivered anyway).',
      labelNames: ['mode', 'result'],
      registers,
    });
    const dane = new Counter({
      name: 'logmta_dane_attempts_total',
      help: 'MX delivery attempts per recipient with DANE on, by what DANE made of them: verified (the certificate matched TLSA records), failed (deferred: TLSA records required TLS no host gave, or their lookup failed), tlsa, unusable, no-tlsa, insecure (DNS not validated).',
      labelNames: ['result'],
      registers,
    });
    const destFailures = new Counter({
      name: 'logmta_destination_failures_total',
      help: 'Deferred or failed delivery attempts by recipient domain (at most 500 domains tracked).',
      labelNames: ['destination', 'status'],
      registers,
    });
    const operator = new Counter({
      name: 'logmta_operator_actions_total',
      help: 'Operator actions on queued messages (hold, release, delete, bounce).',
      registers,
    });
    const etrn = new Counter({
      name: 'logmta_etrn_requests_total',
      help: 'ETRN requests answered, by reply code.',
      labelNames: ['code'],
      registers,
    });
    const atrn = new Counter({
      name: 'logmta_atrn_sessions_total',
      help: 'ATRN requests answered, by reply code.',
      labelNames: ['code'],
      registers,
    });
    const attemptSeconds = new Histogram({
      name: 'logmta_delivery_attempt_seconds',
      help: 'Duration of one delivery attempt (connection, transaction).',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    const delaySeconds = new Histogram({
      name: 'logmta_delivery_delay_seconds',
      help: 'Time from arrival to delivery, for delivered recipients.',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600, 14400, 86400],
      registers,
    });

    // --- histograms fed by the group-commit writers
    const batchRecords = new Histogram({
      name: 'logmta_commit_batch_records',
      help: 'Records per group commit (one fdatasync per touched file covers the whole batch).',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
      registers,
    });
    const batchBytes = new Histogram({
      name: 'logmta_commit_batch_bytes',
      help: 'Bytes per group commit.',
      buckets: [256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216],
      registers,
    });
    const fsyncSeconds = new Histogram({
      name: 'logmta_fsync_seconds',
      help: 'Write plus fdatasync time of one group commit.',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    // Every directory's commits, reopened ones included (a full disk reopens a queue).
    this.detach.push(
      o.queues.onBatch((records, bytes, syncMs) => {
        batchRecords.observe(records);
        batchBytes.observe(bytes);
        fsyncSeconds.observe(syncMs / 1000);
        const t = this.totals;
        t.batches++;
        t.batchRecords += records;
        t.syncs++;
        t.syncMsSum += syncMs;
        if (syncMs > t.syncMsMax) t.syncMsMax = syncMs;
      }),
    );

    // --- mail authentication (src/auth/): fed by the stages through the methods below
    this.authResults = new Counter({
      name: 'logmta_auth_results_total',
      help: 'Results of the SPF, DKIM (one per signature) and DMARC checks of mail from outside.',
      labelNames: ['method', 'result'],
      registers,
    });
    this.dnsblListings = new Counter({
      name: 'logmta_dnsbl_listed_total',
      help: 'Clients refused because a DNS blocklist lists them, by list zone.',
      labelNames: ['zone'],
      registers,
    });
    this.dkimSignatures = new Counter({
      name: 'logmta_dkim_signatures_total',
      help: 'DKIM signatures added to outgoing mail, by algorithm.',
      labelNames: ['algorithm'],
      registers,
    });

    // --- SMTP sessions: a counter of accepted connections, a gauge of open ones
    this.sessionsTotal = new Counter({
      name: 'logmta_smtp_connections_total',
      help: 'SMTP connections accepted (including those refused with 421).',
      registers,
    });
    for (const l of o.listeners ?? []) this.addListener(l);
    new Gauge({
      name: 'logmta_smtp_sessions',
      help: 'Open SMTP sessions.',
      registers,
      collect() {
        this.set(snap().smtpSessions);
      },
    });

    // --- gauges read at scrape time
    new Gauge({
      name: 'logmta_queue_depth',
      help: 'Live envelopes (message pieces) per lane, over every queue directory.',
      labelNames: ['lane', 'kind'],
      registers,
      collect() {
        this.reset();
        for (const l of snap().lanes) this.set({ lane: l.lane, kind: l.kind }, l.live);
      },
    });
    new Gauge({
      name: 'logmta_message_memory_bytes',
      help: 'Message bytes held in memory: data received and not yet written, and accepted data kept for its first attempt.',
      registers,
      collect() {
        this.set(o.queues.budget.used);
      },
    });
    new Gauge({
      name: 'logmta_message_memory_budget_bytes',
      help: 'queue.memory_budget: above it, new SMTP transactions get 452 4.3.1.',
      registers,
      collect() {
        this.set(o.queues.budget.limit);
      },
    });
    new Gauge({
      name: 'logmta_queue_messages',
      help: 'Messages in the queue (each counted once, however many pieces).',
      registers,
      collect() {
        this.set(snap().messages);
      },
    });
    new Gauge({
      name: 'logmta_queue_oldest_message_age_seconds',
      help: 'Age of the oldest queued message (0 when the queue is empty).',
      registers,
      collect() {
        this.set(snap().oldestAgeMs / 1000);
      },
    });
    new Gauge({
      name: 'logmta_held_messages',
      help: 'Pieces waiting in an ETRN/ODMR domain lane, by domain.',
      labelNames: ['domain'],
      registers,
      collect() {
        this.reset();
        for (const h of snap().held) this.set({ domain: h.domain }, h.count);
      },
    });
    new Gauge({
      name: 'logmta_held_oldest_age_seconds',
      help: 'Age of the oldest message waiting for an ETRN/ODMR domain.',
      labelNames: ['domain'],
      registers,
      collect() {
        this.reset();
        for (const h of snap().held) this.set({ domain: h.domain }, h.oldestAgeMs / 1000);
      },
    });
    new Gauge({
      name: 'logmta_operator_held_messages',
      help: 'Pieces in the administrative hold lane.',
      registers,
      collect() {
        this.set(snap().operatorHeld);
      },
    });
    new Gauge({
      name: 'logmta_destination_connections',
      help: 'Outbound connections per destination: active, idle (kept for reuse), waiting (for a slot).',
      labelNames: ['destination', 'state'],
      registers,
      collect() {
        this.reset();
        for (const d of snap().destinations) {
          this.set({ destination: d.key, state: 'active' }, d.active);
          this.set({ destination: d.key, state: 'idle' }, d.idle);
          this.set({ destination: d.key, state: 'waiting' }, d.waiting);
        }
      },
    });
    const pool = o.pool;
    new Gauge({
      name: 'logmta_outbound_connections_opened',
      help: 'Outbound connections opened, reused and skipped (dead-host cache) since start.',
      labelNames: ['how'],
      registers,
      collect() {
        this.set({ how: 'opened' }, pool.stats.connections);
        this.set({ how: 'reused' }, pool.stats.reused);
        this.set({ how: 'dead_skip' }, pool.stats.deadSkips);
      },
    });
    new Gauge({
      name: 'logmta_queue_poisoned',
      help: '1 when a queue directory refuses writes after a failed write or sync.',
      labelNames: ['queue'],
      registers,
      collect() {
        this.reset();
        for (const w of snap().writers) this.set({ queue: w.dir }, w.poisoned ? 1 : 0);
      },
    });
    new Gauge({
      name: 'logmta_queue_spare_segments',
      help: 'Freed segment files kept for reuse: ready now; kept and reused as new segments since start.',
      labelNames: ['queue', 'state'],
      registers,
      collect() {
        this.reset();
        for (const w of snap().writers) {
          this.set({ queue: w.dir, state: 'ready' }, w.spares.ready);
          this.set({ queue: w.dir, state: 'kept' }, w.spares.kept);
          this.set({ queue: w.dir, state: 'reused' }, w.spares.reused);
        }
      },
    });
    const recovery = new Gauge({
      name: 'logmta_recovery_duration_seconds',
      help: 'Time the start-up recovery of each queue directory took.',
      labelNames: ['queue'],
      registers,
    });
    const recoveredMessages = new Gauge({
      name: 'logmta_recovery_messages',
      help: 'Live messages found by the start-up recovery of each queue directory.',
      labelNames: ['queue'],
      registers,
    });
    for (const { dir, report } of o.queues.recoveries()) {
      recovery.set({ queue: dir }, report.ms / 1000);
      recoveredMessages.set({ queue: dir }, report.liveMessages);
    }

    this.detach.push(
      o.bus.on((ev) => {
        switch (ev.type) {
          case 'received':
            received.inc({ source: ev.source });
            receivedBytes.inc(ev.size);
            this.totals.received++;
            this.totals.receivedBytes += ev.size;
            break;
          case 'delivered':
          case 'deferred':
          case 'failed':
            outcomes.inc({ outcome: ev.type });
            this.totals[ev.type]++;
            if (ev.type === 'delivered' && ev.delayMs !== undefined) delaySeconds.observe(ev.delayMs / 1000);
            break;
          case 'expired':
            outcomes.inc({ outcome: 'expired' });
            this.totals.expired++;
            break;
          case 'attempt': {
            const route = ev.relay === 'odmr' || ev.relay === 'local' ? ev.relay : 'remote';
            attempts.inc({ status: ev.status, route });
            attemptSeconds.observe(ev.ms / 1000);
            this.totals.attempts++;
            if (ev.mtaSts !== undefined)
              mtaSts.inc({ mode: ev.mtaSts, result: ev.mtaStsFailure === undefined ? 'ok' : 'failed' });
            if (ev.dane !== undefined) dane.inc({ result: ev.dane });
            const d = this.noteAttempt(ev);
            if (ev.status !== 'delivered' && route === 'remote' && d) {
              // Series never disappear from a counter: past the cap, new domains share "other".
              let label = d.destination;
              if (!this.failureLabels.has(label)) {
                if (this.failureLabels.size >= MAX_DESTINATIONS) label = 'other';
                else this.failureLabels.add(label);
              }
              destFailures.inc({ destination: label, status: ev.status });
            }
            break;
          }
          case 'operator':
            operator.inc();
            break;
          case 'etrn':
            etrn.inc({ code: String(ev.code) });
            break;
          case 'atrn':
            if (ev.phase === 'request') atrn.inc({ code: String(ev.code) });
            break;
        }
      }),
    );
  }

  /** The live-state picture, cached for a moment so one scrape computes it once. */
  snapshot(): DaemonSnapshot {
    const now = this.o.now();
    if (!this.cached || now - this.cached.time > SNAPSHOT_TTL_MS || now < this.cached.time)
      this.cached = takeSnapshot({ ...this.o, listeners: this.listeners });
    return this.cached;
  }

  /** Counts a listener's connections and open sessions (call right after it starts listening). */
  /** One result of the incoming checks; results outside RFC 8601's words count as "other". */
  authResult(method: 'spf' | 'dkim' | 'dmarc', result: string): void {
    this.authResults.inc({ method, result: AUTH_RESULTS.has(result) ? result : 'other' });
  }

  /** A client refused by a DNSBL (zones come from the configuration: a bounded set). */
  dnsblListed(zone: string): void {
    this.dnsblListings.inc({ zone });
  }

  /** A DKIM signature added ('rsa-sha256' or 'ed25519-sha256'). */
  dkimSigned(algorithm: string): void {
    this.dkimSignatures.inc({ algorithm });
  }

  addListener(l: SessionCounting): void {
    this.listeners.push(l);
    const onConn = (): void => this.sessionsTotal.inc();
    l.server.on('connection', onConn);
    this.detach.push(() => l.server.off('connection', onConn));
  }

  /** Per-destination attempt counts, most recently active first. */
  destinations(): DestinationStats[] {
    return [...this.dests.values()].reverse();
  }

  /** The text exposition format (what GET /metrics returns). */
  async scrape(): Promise<{ contentType: string; body: string }> {
    this.cached = undefined;
    const own = await this.registry.metrics();
    const body =
      this.o.processMetrics === false ? own : `${own}\n${await processMetricsRegistry().metrics()}`;
    return { contentType: this.registry.contentType, body };
  }

  /** Detaches from the writers, listeners and bus (the daemon stops). */
  close(): void {
    for (const f of this.detach.splice(0)) f();
    this.registry.clear();
  }

  private noteAttempt(ev: Extract<MtaEvent, { type: 'attempt' }>): DestinationStats | undefined {
    if (ev.relay === 'local' || ev.relay === 'odmr') return undefined;
    const domain = domainOf(ev.rcpt);
    if (domain === '') return undefined;
    let d = this.dests.get(domain);
    if (d) this.dests.delete(domain);
    else {
      d = { destination: domain, attempts: 0, delivered: 0, deferred: 0, failed: 0, lastAt: 0 };
      if (this.dests.size >= MAX_DESTINATIONS) {
        const lru = this.dests.keys().next().value;
        if (lru !== undefined) this.dests.delete(lru);
      }
    }
    this.dests.set(domain, d); // most recent last
    d.attempts++;
    d.lastAt = this.o.now();
    if (ev.status === 'delivered') d.delivered++;
    else {
      if (ev.status === 'failed') d.failed++;
      else d.deferred++;
      const why = [ev.code, ev.text].filter((x) => x !== undefined).join(' ');
      if (why) d.lastError = why.slice(0, 300);
      d.lastErrorAt = d.lastAt;
      d.lastErrorId = ev.id;
    }
    return d;
  }
}

/** GET /metrics on the HTTP admin listener (token-checked like every non-public route). */
export function registerMetricsRoute(routes: RouteRegistry, metrics: Metrics): void {
  routes.registerRoute('GET', '/metrics', async () => {
    const m = await metrics.scrape();
    return { headers: { 'content-type': m.contentType, 'cache-control': 'no-store' }, body: m.body };
  });
}
