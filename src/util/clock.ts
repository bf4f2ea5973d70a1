// Injected time. Code that schedules or stamps takes a Clock so tests can control time.

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Like setTimeout, returns a cancel function. */
  setTimer(ms: number, fn: () => void): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref?.();
    return () => clearTimeout(t);
  },
};
