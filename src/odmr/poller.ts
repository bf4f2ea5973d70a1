// `serve`'s ODMR customer role: polls each [[odmr.provider]] every `interval` (the first poll
// right at start), one poll per provider at a time, and logs what came in.
// Invariant: polls of one provider never overlap; stop() cancels timers and lets a poll in
// progress end on its own (mail accepted so far is durable; the provider keeps the rest).
// Fails: never throws; a failed poll is logged and retried at the next interval.

import type { OdmrProvider as ProviderConfig } from '../config/index.js';
import { errorText } from '../errors.js';
import type { ServerHooks, ServerLogger } from '../smtp/server/hooks.js';
import type { SessionOptions } from '../smtp/server/options.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type CollectResult, collect } from './customer.js';

export interface PollerOptions {
  providers: readonly ProviderConfig[];
  session: SessionOptions;
  hooks: ServerHooks;
  clock?: Clock;
  logger?: ServerLogger & { error?(obj: object, msg?: string): void };
  /** Replaces collect() (tests). */
  collect?: typeof collect;
}

export class OdmrPoller {
  readonly stats = { polls: 0, failures: 0, messages: 0 };
  private readonly clock: Clock;
  private readonly cancels = new Map<ProviderConfig, () => void>();
  private stopped = false;

  constructor(private readonly o: PollerOptions) {
    this.clock = o.clock ?? systemClock;
  }

  start(): void {
    for (const p of this.o.providers) this.schedule(p, 0);
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.cancels.values()) c();
    this.cancels.clear();
  }

  /** One poll of one provider. */
  async poll(p: ProviderConfig): Promise<CollectResult | undefined> {
    const run = this.o.collect ?? collect;
    const target = `${p.host.host}:${p.host.port}`;
    this.stats.polls++;
    try {
      const r = await run({
        host: p.host.host,
        port: p.host.port,
        user: p.user,
        password: p.password,
        ...(p.domains ? { domains: p.domains } : {}),
        session: this.o.session,
        hooks: this.o.hooks,
        clock: this.clock,
        ...(this.o.logger ? { logger: this.o.logger } : {}),
      });
      this.stats.messages += r.messages;
      if (r.complete === false)
        this.o.logger?.warn(
          { provider: target, user: p.user, ...r },
          'odmr poll cut short: the connection was lost before the provider QUIT; the rest stays held there',
        );
      else this.o.logger?.info({ provider: target, user: p.user, ...r }, 'odmr poll done');
      return r;
    } catch (e) {
      this.stats.failures++;
      this.o.logger?.warn({ provider: target, user: p.user, err: errorText(e) }, 'odmr poll failed');
      return undefined;
    }
  }

  private schedule(p: ProviderConfig, ms: number): void {
    if (this.stopped) return;
    this.cancels.set(
      p,
      this.clock.setTimer(ms, () => {
        void this.poll(p).finally(() => this.schedule(p, p.intervalMs));
      }),
    );
  }
}
