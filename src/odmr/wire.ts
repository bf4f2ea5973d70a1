// Builds the ETRN and ODMR parts of a running daemon from the configuration: the ETRN hook of
// the SMTP listeners, the probes of ETRN domains, the ODMR provider listeners and the pollers of
// [[odmr.provider]]. daemon.ts calls startEtrnOdmr once, after the queue has started and before
// the SMTP listeners open (they read hooks.etrn when a session starts).
// Invariant: the ETRN runners and the ATRN sessions share one HeldLocks, so a lane never has two
// runners. Fails: rejects when an ODMR listener cannot bind (after closing what it opened).

import { type Config, formatHostPort, sessionTimeouts } from '../config/index.js';
import type { DnsResolver } from '../delivery/mx.js';
import type { IsSelf } from '../delivery/self.js';
import type { ServerHooks } from '../smtp/server/hooks.js';
import type { Clock } from '../util/clock.js';
import { listenError } from '../util/listen-error.js';
import type { ClaimableLanes } from './atrn-delivery.js';
import { EtrnService, type HeldLanes, type OdmrLogger } from './etrn.js';
import { HeldLocks } from './locks.js';
import { OdmrPoller } from './poller.js';
import { EtrnProber } from './probe.js';
import { OdmrProvider, type OdmrProviderOptions } from './provider.js';
import type { RateGate } from './rate.js';
import type { AuthThrottleLike } from '../smtp/server/options.js';
import type { ListenSockets } from '../util/listen-sockets.js';

/** What ETRN and ATRN requests emit (admin/events.ts carries them on the event bus). */
export type EtrnOdmrEvent =
  | {
      type: 'etrn';
      client: string;
      node: string;
      code: number;
      /** Pieces the request made free. */
      count?: number;
    }
  | {
      type: 'atrn';
      client: string;
      user?: string;
      domains: string[];
      code: number;
      /** Messages sent after the turnaround (set on the closing event). */
      delivered?: number;
      phase: 'request' | 'end';
    };

export interface EtrnOdmrDeps {
  queues: HeldLanes & ClaimableLanes;
  /** The daemon's SMTP hooks: hooks.etrn is set here; pollers deliver into hooks.accept. */
  hooks: ServerHooks;
  clock: Clock;
  logger: OdmrLogger;
  resolver: DnsResolver;
  random?: () => number;
  /** Port of MX hosts (tests). */
  mxPort?: number;
  /** Whether an MX address is one of our own listeners: never probed. */
  isSelf?: IsSelf;
  /** A probe found this host up (the daemon clears it from the dead-host cache). */
  onReachable?(host: string, port: number): void;
  emit?(ev: EtrnOdmrEvent): void;
  /** Limits counted over a whole cluster instead of by this node alone. */
  shared?: {
    etrnRate?: RateGate;
    odmrAuthRate?: RateGate;
    odmrAuthThrottle?: AuthThrottleLike;
  };
  /** ATRN at any node (a cluster): peers' sessions and requests for domains homed elsewhere. */
  odmrCluster?: OdmrProviderOptions['cluster'];
  /** Listening sockets kept across reloads (`logmta serve`): the ODMR ports are among them. */
  listenSockets?: ListenSockets;
}

export interface EtrnOdmr {
  etrn: EtrnService;
  prober: EtrnProber;
  providers: OdmrProvider[];
  poller: OdmrPoller;
  /** Bound ODMR listener addresses ("host:port"). */
  addresses: string[];
  stop(graceMs?: number): Promise<void>;
}

export async function startEtrnOdmr(config: Config, d: EtrnOdmrDeps): Promise<EtrnOdmr> {
  const locks = new HeldLocks();
  const etrn = new EtrnService({
    domains: config.etrn,
    lanes: d.queues,
    clock: d.clock,
    logger: d.logger,
    locks,
    maxConcurrent: config.etrnLimits.maxConcurrentFlushes,
    perClientLimit: config.etrnLimits.requestsPerClient,
    perClientWindowMs: config.etrnLimits.requestWindowMs,
    ...(d.shared?.etrnRate ? { rate: d.shared.etrnRate } : {}),
    onReply: (ev) =>
      d.emit?.({
        type: 'etrn',
        client: ev.ip,
        node: ev.node,
        code: ev.code,
        ...(ev.count !== undefined ? { count: ev.count } : {}),
      }),
  });
  if (config.etrn.length > 0) d.hooks.etrn = etrn.hook;
  const prober = new EtrnProber({
    domains: config.etrn,
    lanes: d.queues,
    service: etrn,
    name: config.hostname,
    clock: d.clock,
    logger: d.logger,
    resolver: d.resolver,
    ...(d.random ? { random: d.random } : {}),
    ...(d.mxPort !== undefined ? { mxPort: d.mxPort } : {}),
    ...(d.isSelf ? { isSelf: d.isSelf } : {}),
    ...(d.onReachable ? { onReachable: d.onReachable } : {}),
  });
  prober.start();
  const providers: OdmrProvider[] = [];
  const addresses: string[] = [];
  const stopAll = async (graceMs: number): Promise<void> => {
    poller.stop();
    prober.stop();
    etrn.stop();
    await Promise.all(providers.map((p) => p.stop(graceMs)));
  };
  const poller = new OdmrPoller({
    providers: config.odmr.providers,
    session: {
      hostname: config.hostname,
      maxMessageSize: config.smtp.maxMessageSize,
      maxRecipients: config.smtp.maxRecipients,
      ...sessionTimeouts(config.smtp),
    },
    hooks: d.hooks,
    clock: d.clock,
    logger: d.logger,
  });
  // The provider listens even without accounts (the documented default, 127.0.0.1:3366), but
  // then a port it cannot have is only a warning: nobody could authenticate to it anyway.
  const optional = config.odmr.accounts.length === 0;
  try {
    for (const [i, hp] of config.odmr.listen.entries()) {
      const p = new OdmrProvider({
        hostname: config.hostname,
        accounts: config.odmr.accounts,
        lanes: d.queues,
        locks,
        clock: d.clock,
        logger: d.logger,
        idleTimeoutMs: config.smtp.idleTimeoutMs,
        commandTimeoutMs: config.smtp.commandTimeoutMs,
        authPerMinute: config.odmr.authPerMinute,
        ...(d.shared?.odmrAuthRate ? { authRate: d.shared.odmrAuthRate } : {}),
        ...(d.shared?.odmrAuthThrottle ? { authThrottle: d.shared.odmrAuthThrottle } : {}),
        ...(d.odmrCluster ? { cluster: d.odmrCluster } : {}),
        ...(config.tls ? { tls: config.tls } : {}),
        onAtrn: (ev) =>
          d.emit?.({
            type: 'atrn',
            client: ev.ip,
            ...(ev.user !== undefined ? { user: ev.user } : {}),
            domains: ev.domains,
            code: ev.code,
            ...(ev.delivered !== undefined ? { delivered: ev.delivered } : {}),
            phase: ev.phase,
          }),
      });
      let a: Awaited<ReturnType<OdmrProvider['listen']>>;
      try {
        a = await p.listen(hp.port, hp.host, d.listenSockets);
      } catch (e) {
        if (!optional) throw listenError(e, formatHostPort(hp), `odmr.listen[${i + 1}]`);
        d.logger?.warn(
          { listen: `${hp.host}:${hp.port}`, err: e instanceof Error ? e.message : String(e) },
          'ODMR listener not opened (no [[odmr.account]] configured)',
        );
        await p.stop().catch(() => {});
        continue;
      }
      providers.push(p);
      addresses.push(`${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`);
    }
  } catch (e) {
    await stopAll(0);
    throw e;
  }
  poller.start();
  return { etrn, prober, providers, poller, addresses, stop: (graceMs = 5_000) => stopAll(graceMs) };
}
