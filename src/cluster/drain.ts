// Draining a node so that it can be retired: every domain homed here gets a new home (rendezvous
// over the live nodes that are not draining), so the held lanes go to their homes through the
// usual transfer; all other mail — new, deferred in the retry ladder, arriving meanwhile — is
// routed to a live peer chosen by rendezvous hashing of its destination (directory.ts), and the
// retry ladder is made due now, again on every pass while mail is left.
// Invariants: a message leaves this node only by the receiving node's 250 to it (the normal
// delivery path commits the outcome), so a drain that is interrupted — `cluster drain --stop`, a
// crash, a restart — loses nothing, and running it again resumes from whatever is left. The
// drain state is kept in Redis (and shown in the heartbeat), so a restarted node goes on
// draining. Mail the operator put on hold (`queue hold`) is not moved: it waits for a release
// or a delete, and the status says how much of it there is.
// Fails: never throws; without a live peer a pass moves nothing and the next one tries again.

import type { Logger } from '../log.js';
import type { Queues } from '../queue/index.js';
import type { Clock } from '../util/clock.js';
import type { Directory } from './directory.js';
import type { Homes } from './homes.js';
import type { Keys } from './keys.js';
import type { Membership } from './membership.js';
import type { RedisLink } from './redis.js';
import { rendezvous } from './rendezvous.js';
import type { Transfers } from './transfer.js';

export interface DrainStatus {
  draining: boolean;
  /** Messages still queued here. */
  queued: number;
  /** Of those, pieces in held (ETRN/ODMR) lanes. */
  held: number;
  /** Of those, pieces the operator holds (not moved). */
  hold: number;
  /** Nodes the mail goes to. */
  peers: string[];
  started?: number;
}

export interface DrainOptions {
  self: string;
  link: RedisLink;
  keys: Keys;
  directory: Directory;
  homes: Homes;
  membership: Membership;
  queues: Queues;
  transfers: () => Transfers | undefined;
  clock: Clock;
  log: Logger;
  /** Time between passes (default 2 s). */
  intervalMs?: number;
}

export class Drain {
  private cancel: (() => void) | undefined;
  private started: number | undefined;

  constructor(private readonly o: DrainOptions) {}

  get draining(): boolean {
    return this.o.directory.draining;
  }

  /** Resumes a drain Redis says this node was doing (after a restart). */
  async resume(): Promise<void> {
    const v = await this.o.link.run((r) => r.hget(this.o.keys.drain, this.o.self));
    if (typeof v === 'string') {
      this.o.log.warn({}, 'cluster: resuming the drain of this node');
      await this.start(true);
    }
  }

  async start(resumed = false): Promise<DrainStatus> {
    const o = this.o;
    if (!this.draining) {
      o.directory.draining = true;
      this.started = o.clock.now();
      if (!resumed)
        await o.link.run(
          (r) =>
            r
              .multi()
              .hset(o.keys.drain, o.self, JSON.stringify({ started: this.started }))
              .publish(o.keys.events, JSON.stringify({ type: 'drain', node: o.self, on: true }))
              .exec(),
          2,
        );
      o.log.warn({}, 'cluster: draining this node');
      await o.membership.beat();
    }
    await this.pass();
    this.arm();
    return this.status();
  }

  async stop(): Promise<DrainStatus> {
    const o = this.o;
    this.cancel?.();
    this.cancel = undefined;
    if (this.draining) {
      o.directory.draining = false;
      this.started = undefined;
      await o.link.run(
        (r) =>
          r
            .multi()
            .hdel(o.keys.drain, o.self)
            .publish(o.keys.events, JSON.stringify({ type: 'drain', node: o.self, on: false }))
            .exec(),
        2,
      );
      o.log.warn({}, 'cluster: drain of this node stopped');
      await o.membership.beat();
    }
    return this.status();
  }

  private peers(): string[] {
    return this.o.membership.live({ withoutDraining: true }).filter((n) => n !== this.o.self);
  }

  /** One pass: new homes for the domains homed here, held lanes home, the retry ladder now. */
  private async pass(): Promise<void> {
    const o = this.o;
    const peers = this.peers();
    if (peers.length === 0) {
      o.log.warn({}, 'cluster: drain waits for a live node to move mail to');
      return;
    }
    for (const [domain, home] of o.homes.all()) {
      if (home !== o.self) continue;
      const to = rendezvous(domain, peers);
      if (to && (await o.homes.set(domain, to)))
        o.log.info({ domain, node: to }, 'cluster: drain moved a domain home');
    }
    for (const d of o.queues.heldDomains()) await o.homes.ensure(d);
    o.transfers()?.sweep(o.clock.now());
    const n = o.queues.flushRetries();
    if (n > 0) o.log.info({ pieces: n }, 'cluster: drain pass: the retry ladder goes to the peers');
  }

  private arm(): void {
    if (this.cancel) return;
    const tick = (): void => {
      this.cancel = undefined;
      if (!this.draining) return;
      const s = this.status();
      if (s.queued - s.hold <= 0) {
        this.arm();
        return;
      }
      void this.pass().finally(() => this.arm());
    };
    this.cancel = this.o.clock.setTimer(this.o.intervalMs ?? 2_000, tick);
  }

  status(): DrainStatus {
    const q = this.o.queues;
    const queued = q.messageCount();
    let held = 0;
    let hold = 0;
    for (const l of q.laneDepths()) {
      if (l.kind === 'held') held += l.live;
      else if (l.kind === 'hold') hold += l.live;
    }
    return {
      draining: this.draining,
      queued,
      held,
      hold,
      peers: this.peers(),
      ...(this.started !== undefined ? { started: this.started } : {}),
    };
  }

  close(): void {
    this.cancel?.();
  }
}
