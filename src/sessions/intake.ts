// The daemon's intake: the SMTP server's hooks built from the configuration (relay control, users,
// [[access]] rules, DNSBL, incoming auth checks, milters, DKIM signing, the hand-over to the
// queue) and the SMTP listeners that use them (smtp.listen, smtp.submission, smtp.submissions),
// with the per-client rates over all of them. Built the same way wherever the SMTP sessions run:
// on the main thread beside the queue, or in the session thread (sessions/thread-main.ts), where
// the queue, the resolver and the counters are doors to the main thread's.
// Order of the stages (policy/pipeline.ts): our Received: (the session's) → incoming auth checks
// → milters → DKIM signing → queue. The auth stages are loaded only when configured.
// Fails: buildListeners rejects with a ConfigError-like listen error naming the configuration key
// (smtp.listen[1]) of an address that cannot be bound.

import type { Cluster } from '../cluster/index.js';
import { cidrListContains, type Config, formatDuration, formatHostPort, sessionTimeouts } from '../config/index.js';
import type { Router } from '../delivery/router.js';
import type { DnsResolver } from '../dns/types.js';
import type { Logger } from '../log.js';
import { accessControl } from '../policy/access.js';
import { type SessionFilter, withFilters } from '../policy/filters.js';
import { type HookQueue, makeServerHooks } from '../policy/hooks.js';
import { makeMilterStage } from '../policy/milter-stage.js';
import type { AcceptStage } from '../policy/pipeline.js';
import type { IdSource } from '../queue/index.js';
import { ClientRates } from '../smtp/server/client-rates.js';
import type { ServerHooks } from '../smtp/server/hooks.js';
import { SmtpListener } from '../smtp/server/listener.js';
import type { Clock } from '../util/clock.js';
import { listenError } from '../util/listen-error.js';
import type { ListenSockets } from '../util/listen-sockets.js';

/** Counters of what the checks found (the main thread's Metrics). */
export interface CheckCounts {
  authResult(method: 'spf' | 'dkim' | 'dmarc', result: string): void;
  dnsblListed(zone: string): void;
  dkimSigned(algorithm: string): void;
}

export interface IntakeDeps {
  config: Config;
  router: Router;
  queue: HookQueue;
  ids: IdSource;
  resolver: DnsResolver;
  clock: Clock;
  log: Logger;
  counts: CheckCounts;
  /** A cluster wraps the policy hooks (mail for domains homed on other nodes); main thread only. */
  cluster?: Cluster;
}

export interface Intake {
  /** For the SMTP listeners: every filter, the [[access]] rules first. */
  smtp: ServerHooks;
  /** For local submission (sendmail, the control socket's inject): the filters but not [[access]]. */
  local: ServerHooks;
}

export async function buildIntake(d: IntakeDeps): Promise<Intake> {
  const { config, resolver, clock, log } = d;
  const filters: SessionFilter[] = [];
  const stages: AcceptStage[] = [];
  if (config.auth.checks) {
    const { authCheckStage } = await import('../auth/check-stage.js');
    stages.push(
      await authCheckStage({
        authservId: config.auth.authservId,
        dmarcReject: config.auth.dmarcReject,
        tempfailOnDnsError: config.auth.tempfailOnDnsError,
        timeoutMs: config.auth.timeoutMs,
        resolver,
        relayNetworks: config.smtp.relayNetworks,
        logger: log.child({ component: 'auth' }),
        onResult: (method, result) => d.counts.authResult(method, result),
      }),
    );
  }
  // The postmaster's [[access]] rules: an SMTP listener's first filter (a permit spares the RCPT
  // DNSBL lookups); local submissions do not pass them (Postfix's sendmail skips smtpd's too).
  const access =
    config.access.length > 0 ? accessControl(config.access, log.child({ component: 'access' })) : undefined;
  if (config.dnsbl.length > 0) {
    const { dnsblFilter } = await import('../auth/dnsbl.js');
    filters.push(
      dnsblFilter({
        lists: config.dnsbl,
        resolver,
        relayNetworks: config.smtp.relayNetworks,
        logger: log.child({ component: 'dnsbl' }),
        onListed: (zone) => d.counts.dnsblListed(zone),
        ...(access ? { permitted: access.permitted } : {}),
      }),
    );
  }
  if (config.milters.length > 0) {
    const milters = makeMilterStage(config.milters, {
      hostname: config.hostname,
      clock,
      mailerOf: (domain) =>
        d.router.isLocal(domain) ? (d.router.localDomain(domain)?.lmtp ? 'lmtp' : 'local') : 'smtp',
      warn: (obj, msg) => log.warn(obj as Record<string, unknown>, msg),
    });
    filters.push(milters.filter);
    stages.push(milters.stage);
  }
  if (config.dkim.length > 0) {
    const { dkimSignStage } = await import('../auth/sign-stage.js');
    stages.push(
      dkimSignStage({
        keys: config.dkim,
        relayNetworks: config.smtp.relayNetworks,
        clock,
        logger: log.child({ component: 'dkim' }),
        onSigned: (algorithm) => d.counts.dkimSigned(algorithm),
      }),
    );
  }
  const policyHooks = makeServerHooks(config, d.router, d.queue, d.ids, stages);
  const base = d.cluster
    ? d.cluster.serverHooks(policyHooks, (dom) => d.router.odmrDomainOf(dom) ?? d.router.etrnOf(dom)?.domain)
    : policyHooks;
  const local = withFilters(base, filters);
  return { smtp: access ? withFilters(base, [access.filter, ...filters]) : local, local };
}

export interface ListenerDeps {
  config: Config;
  hooks: ServerHooks;
  clock: Clock;
  log: Logger;
  cluster?: Cluster;
  listenSockets?: ListenSockets;
  /** Told of each listener as soon as it listens (so that a failed start can stop it). */
  started?: (l: SmtpListener) => void;
}

export type ListenerRole = 'smtp' | 'submission' | 'submissions';

export interface BoundListener {
  role: ListenerRole;
  listener: SmtpListener;
  address: string;
  port: number;
}

/** Opens every configured SMTP listener, in the configuration's order. */
export async function buildListeners(d: ListenerDeps): Promise<BoundListener[]> {
  const { config, cluster, clock, log } = d;
  // Per-client rates over every SMTP listener (not ODMR): Postfix's anvil limits; in a cluster
  // counted in Redis for every node (each node counting alone while Redis is unreachable).
  const rates = new ClientRates(clock, {
    ...(cluster ? { shared: cluster.clientRateCount() } : {}),
    ...(config.smtp.clientConnectionRate ? { connection: config.smtp.clientConnectionRate } : {}),
    ...(config.smtp.clientMessageRate ? { message: config.smtp.clientMessageRate } : {}),
    ...(config.smtp.clientRecipientRate ? { recipient: config.smtp.clientRecipientRate } : {}),
    exempt: (ip) => cidrListContains(config.smtp.clientRateExceptions, ip),
    onLimit: (kind, ip, rate) =>
      log.warn(
        { ip, kind, limit: rate.count, window: formatDuration(rate.periodMs) },
        'client rate limit reached',
      ),
  });
  const out: BoundListener[] = [];
  const tls = config.tls; // key, certificate and policy (min_version, ciphers)
  for (const [role, list] of [
    ['smtp', config.smtp.listen],
    ['submission', config.smtp.submission],
    // Implicit TLS (RFC 8314): the submission rules behind a handshake from the first byte.
    ['submissions', config.smtp.submissions],
  ] as const) {
    for (const [i, hp] of list.entries()) {
      const l = new SmtpListener(
        {
          hostname: config.hostname,
          maxMessageSize: config.smtp.maxMessageSize,
          maxRecipients: config.smtp.maxRecipients,
          maxConnections: config.smtp.maxConnections,
          maxPerIp: config.smtp.maxConnectionsPerIp,
          ...sessionTimeouts(config.smtp),
          allowPlainWithoutTls: config.smtp.allowPlainAuthWithoutTls,
          authThrottleOptions: {
            maxFailures: config.smtp.authMaxFailures,
            blockMs: config.smtp.authBlockTimeMs,
            baseDelayMs: config.smtp.authFailureDelayMs,
            maxDelayMs: config.smtp.authFailureDelayMaxMs,
          },
          submission: role !== 'smtp',
          implicitTls: role === 'submissions',
          // A cluster counts AUTH failures and blocks per client address over every node.
          ...(cluster ? { authThrottle: cluster.limits.smtpAuth } : {}),
          ...(rates.active ? { clientRates: rates } : {}),
          clock,
          logger: log.child({ component: 'smtp', role }),
          ...(tls ? { tls } : {}),
        },
        d.hooks,
      );
      d.started?.(l);
      let addr: Awaited<ReturnType<SmtpListener['listen']>>;
      try {
        addr = await l.listen(hp.port, hp.host, d.listenSockets);
      } catch (e) {
        // The key as the configuration names it: smtp.listen, smtp.submission, smtp.submissions.
        throw listenError(e, formatHostPort(hp), `smtp.${role === 'smtp' ? 'listen' : role}[${i + 1}]`);
      }
      out.push({ role, listener: l, address: addr.address, port: addr.port });
    }
  }
  return out;
}

/** "host:port" as logged and reported, IPv6 in brackets. */
export function shownAddress(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}
