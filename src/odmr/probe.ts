// Periodic probes of ETRN domains (DESIGN.md §7): every probe_interval, each ETRN domain with held
// mail has its host (the configured one, else its MX hosts in order, never this host itself —
// by address or by a greeting naming our hostname: delivery/self.ts) checked with connect, EHLO, QUIT; only when a host answers is the lane
// flushed (EtrnService.run), and the host is taken out of the dead-host cache (onReachable):
// the flush must not trip over marks the probe disproved.
// Invariant: a probe touches nothing but a socket — a failed probe writes nothing to the queue
// (no attempt is recorded, no envelope is rewritten), so an unreachable customer costs no disk.
// Fails: never throws; lookup and connection errors count as a failed probe (logged at debug).

import type { EtrnDomain } from '../config/index.js';
import net from 'node:net';
import { type DnsResolver, type MxCandidate, resolveAddresses, resolveMx } from '../delivery/mx.js';
import { greetsAs, type IsSelf, withoutSelf } from '../delivery/self.js';
import { probe as smtpProbe } from '../smtp/client/index.js';
import { type Clock, systemClock } from '../util/clock.js';
import type { OdmrLogger, RunRequest } from './etrn.js';

export type ProbeResult = 'empty' | 'running' | 'up' | 'down';

export interface ProberOptions {
  domains: readonly Pick<EtrnDomain, 'domain' | 'host' | 'probeIntervalMs'>[];
  lanes: { heldCount(domain: string): number };
  service: { run(domain: string): RunRequest; isRunning(domain: string): boolean };
  /** Our EHLO name. */
  name: string;
  clock?: Clock;
  logger?: OdmrLogger;
  /** For MX lookups of domains without a host. */
  resolver?: DnsResolver;
  random?: () => number;
  /** Port of MX hosts (default 25). */
  mxPort?: number;
  /** Whether an MX address is one of our own listeners (delivery/self.ts): never probed. */
  isSelf?: IsSelf;
  /** Replaces the SMTP probe (tests). */
  probe?: (host: string, port: number) => Promise<boolean>;
  /** Bound on each probe step (default 30 s). */
  timeoutMs?: number;
  /** MX hosts tried per probe (default 3). */
  maxHosts?: number;
  /** Told of the host that answered a probe (the daemon clears it from the dead-host cache). */
  onReachable?(host: string, port: number): void;
}

export class EtrnProber {
  /** Probes run and how many failed (for tests and metrics). */
  readonly stats = { probes: 0, failures: 0 };
  private readonly clock: Clock;
  private readonly cancels = new Map<string, () => void>();
  private readonly active = new Set<string>();
  private stopped = false;

  constructor(private readonly o: ProberOptions) {
    this.clock = o.clock ?? systemClock;
  }

  start(): void {
    for (const e of this.o.domains) this.schedule(e.domain, e.probeIntervalMs);
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.cancels.values()) c();
    this.cancels.clear();
  }

  /** Probes one domain now; flushes its lane when the host answers. */
  async probeNow(domain: string): Promise<ProbeResult> {
    const e = this.o.domains.find((x) => x.domain === domain);
    if (e === undefined || this.o.lanes.heldCount(domain) === 0) return 'empty';
    if (this.o.service.isRunning(domain) || this.active.has(domain)) return 'running';
    this.active.add(domain);
    try {
      const up = await this.reachable(e);
      this.stats.probes++;
      if (!up) {
        this.stats.failures++;
        this.o.logger?.debug({ domain }, 'etrn probe failed');
        return 'down';
      }
      const r = this.o.service.run(domain);
      this.o.logger?.info({ domain, run: r }, 'etrn probe succeeded');
      return 'up';
    } finally {
      this.active.delete(domain);
    }
  }

  private schedule(domain: string, ms: number): void {
    if (this.stopped) return;
    this.cancels.set(
      domain,
      this.clock.setTimer(ms, () => {
        this.probeNow(domain).finally(() => this.schedule(domain, ms));
      }),
    );
  }

  private async reachable(e: Pick<EtrnDomain, 'domain' | 'host'>): Promise<boolean> {
    const check =
      this.o.probe ??
      ((host: string, port: number) =>
        smtpProbe(host, port, {
          name: this.o.name,
          clock: this.clock,
          timeoutMs: this.o.timeoutMs ?? 30_000,
          // This MTA behind NAT greets with our name: reaching it proves nothing of the customer.
          refuseGreeting: (text) => greetsAs(text, this.o.name),
        }));
    let targets: MxCandidate[];
    if (e.host) targets = [{ ...e.host, preference: -1 }];
    else {
      if (!this.o.resolver) return false;
      try {
        const opts: Parameters<typeof resolveMx>[1] = { resolver: this.o.resolver };
        if (this.o.random) opts.random = this.o.random;
        if (this.o.mxPort !== undefined) opts.port = this.o.mxPort;
        targets = (await resolveMx(e.domain, opts)).slice(0, this.o.maxHosts ?? 3);
      } catch {
        return false;
      }
    }
    // Host names become addresses through the same resolver as delivery ([dns]), not the system's.
    if (this.o.resolver && targets.some((t) => net.isIP(t.host) === 0)) {
      try {
        targets = await resolveAddresses(targets, this.o.resolver);
      } catch {
        return false;
      }
    }
    // As delivery does (router.ts, pool.ts): this host, and MX hosts it prefers to itself, prove
    // nothing; nor does a configured host that is one of our listeners (a misconfiguration).
    const isSelf = this.o.isSelf;
    if (isSelf && e.host) targets = targets.filter((t) => !isSelf(t.host, t.port));
    else if (isSelf) {
      try {
        targets = withoutSelf(e.domain, targets, isSelf);
      } catch {
        return false;
      }
    }
    for (const t of targets) {
      if (this.stopped) return false;
      if (await check(t.host, t.port)) {
        this.o.onReachable?.(t.host, t.port);
        return true;
      }
    }
    return false;
  }
}
