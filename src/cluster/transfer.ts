// Held mail goes home: a domain's mail that waits in this node's held lane while its home is
// another node (accepted here while the home was down, or held here before the domain moved) is
// offered to the home — by flushing the lane, which the router sends to the home's SMTP. A pass
// runs when the home is learnt or changes, when the home comes alive, on an ETRN for the domain
// here, and every transfer_interval for every such lane.
// Invariant: one transfer runner per lane, and never while another runner (an ETRN flush, an
// ATRN session) holds the lane (the shared HeldLocks); a transfer that fails writes nothing —
// the pieces stay held here — and a piece leaves this node only by the home's 250.
// Fails: never throws; a failed pass is logged and retried on the next tick.

import type { Logger } from '../log.js';
import type { HeldLocks } from '../odmr/index.js';
import type { Clock } from '../util/clock.js';

export interface TransferLanes {
  heldDomains(): string[];
  heldCount(domain: string): number;
  flushHeld(domain: string, opts?: { reachableSince?: number }): Promise<number>;
}

export interface TransfersOptions {
  lanes: TransferLanes;
  locks: HeldLocks;
  /** Whether the domain's home is another node (its mail should leave this one). */
  away(domain: string): boolean;
  /**
   * Since when the domain's home is known to be up (its heartbeat), if it is: a pass then gets
   * past dead-host marks of the home's downtime instead of waiting them out.
   */
  upSince?(domain: string): number | undefined;
  clock: Clock;
  intervalMs: number;
  log: Logger;
}

const OWNER = 'cluster-transfer';

interface Runner {
  again: boolean;
  since: number | undefined;
  done: Promise<void>;
}

export class Transfers {
  private readonly runners = new Map<string, Runner>();
  private cancel: (() => void) | undefined;
  private stopped = false;
  /** Passes run (tests, status). */
  passes = 0;

  constructor(private readonly o: TransfersOptions) {}

  start(): void {
    const tick = (): void => {
      this.sweep();
      if (!this.stopped) this.cancel = this.o.clock.setTimer(this.o.intervalMs, tick);
    };
    this.cancel = this.o.clock.setTimer(this.o.intervalMs, tick);
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
  }

  /** Offers every lane held for another home (`since`: the homes proved reachable then). */
  sweep(since?: number): void {
    for (const d of this.o.lanes.heldDomains()) if (this.o.away(d)) this.kick(d, since);
  }

  /**
   * Runs a transfer pass for the domain's lane, or asks the running one for another pass.
   * Resolves when the lane's runner is done (at once when there is nothing to move).
   */
  kick(domain: string, since?: number): Promise<void> {
    const d = domain.toLowerCase();
    if (this.stopped || !this.o.away(d)) return Promise.resolve();
    const r = this.runners.get(d);
    if (r) {
      r.again = true;
      if (since !== undefined) r.since = since;
      return r.done;
    }
    if (this.o.lanes.heldCount(d) === 0) return Promise.resolve();
    if (!this.o.locks.tryLock([d], OWNER)) return Promise.resolve(); // an ETRN or ATRN has it; next tick
    const runner: Runner = { again: false, since: since ?? this.o.upSince?.(d), done: Promise.resolve() };
    runner.done = this.loop(d, runner);
    this.runners.set(d, runner);
    return runner.done;
  }

  /** Whether a transfer of this domain's lane is running (ETRN counting). */
  isRunning(domain: string): boolean {
    return this.runners.has(domain.toLowerCase());
  }

  private async loop(d: string, runner: Runner): Promise<void> {
    try {
      do {
        runner.again = false;
        const opts = runner.since === undefined ? {} : { reachableSince: runner.since };
        const n = await this.o.lanes.flushHeld(d, opts);
        this.passes++;
        this.o.log.info(
          { domain: d, offered: n, left: this.o.lanes.heldCount(d) },
          'cluster: transfer pass done',
        );
      } while (runner.again && !this.stopped && this.o.away(d));
    } catch (e) {
      this.o.log.warn(
        { domain: d, err: e instanceof Error ? e.message : String(e) },
        'cluster: transfer failed',
      );
    } finally {
      this.runners.delete(d);
      this.o.locks.release([d], OWNER);
    }
  }
}
