// The one fake clock of the tests: time moves only when a test says so, and timers fire as real
// time would fire them. advance(ms) walks forward timer by timer in due order (ties in the order
// they were armed), setting now() to each timer's due time before calling it, so a timer that a
// callback arms and that falls due within the same advance fires in it too; now() ends at the
// target time. A timer armed outside advance() that is already due (a delay of 0, or a due time
// an async continuation computed before now() moved on) fires on the next turn of the event
// loop, as a real overdue timer would. A negative or NaN delay means "at once" (as setTimer in
// src/util/clock.ts).
// Tests wait on the clock's state instead of sleeping: `pending` counts armed timers and
// `nextDue()` says when the next one fires.
// Invariant: a timer fires at most once, never before its due time, never after it is cancelled.
// Fails: advance() throws when callbacks keep arming timers due at once (a livelock in the code
// under test) instead of spinning forever.

import type { Clock } from '../../src/util/clock.js';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** Timer callbacks one advance() may run before it calls the code under test livelocked. */
const MAX_FIRINGS = 100_000;

export class FakeClock implements Clock {
  private t: number;
  private timers: Timer[] = [];
  private seq = 0;
  private advancing = false;

  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimer(ms: number, fn: () => void): () => void {
    const delay = Number.isFinite(ms) ? Math.max(0, ms) : ms > 0 ? Number.POSITIVE_INFINITY : 0;
    const timer: Timer = { at: this.t + delay, seq: this.seq++, fn };
    this.timers.push(timer);
    if (!this.advancing && timer.at <= this.t) {
      setImmediate(() => {
        const i = this.timers.indexOf(timer);
        if (i < 0 || this.advancing) return;
        this.timers.splice(i, 1);
        timer.fn();
      });
    }
    return () => {
      const i = this.timers.indexOf(timer);
      if (i >= 0) this.timers.splice(i, 1);
    };
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in due order. */
  advance(ms: number): void {
    const end = this.t + ms;
    this.advancing = true;
    try {
      for (let fired = 0; ; fired++) {
        if (fired >= MAX_FIRINGS) throw new Error(`FakeClock: ${MAX_FIRINGS} timers fired in one advance`);
        let next: Timer | undefined;
        for (const x of this.timers)
          if (next === undefined || x.at < next.at || (x.at === next.at && x.seq < next.seq)) next = x;
        if (next === undefined || next.at > end) break;
        this.timers.splice(this.timers.indexOf(next), 1);
        this.t = Math.max(this.t, next.at);
        next.fn();
      }
    } finally {
      this.advancing = false;
    }
    this.t = Math.max(this.t, end);
  }

  /** Jumps to `t` without firing anything (a clock step: NTP, a VM resumed). */
  set(t: number): void {
    this.t = t;
  }

  /** Timers armed and not yet fired or cancelled. */
  get pending(): number {
    return this.timers.length;
  }

  /** Milliseconds until the next timer is due (0 if one is due now), undefined when none is armed. */
  nextDue(): number | undefined {
    let at: number | undefined;
    for (const x of this.timers) if (at === undefined || x.at < at) at = x.at;
    return at === undefined ? undefined : Math.max(0, at - this.t);
  }
}
