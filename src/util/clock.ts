// Injected time, and the one timer helper every part of logmta uses. Code that schedules or
// stamps takes a Clock so tests can control time.
// Invariant: a timer fires no earlier than asked and never spins. Node's setTimeout takes at
// most 2^31-1 ms (24.8 days) and fires a longer (or NaN) delay after 1 ms with a
// TimeoutOverflowWarning, so a re-armed long timer would loop a thousand times a second;
// `setTimer` waits a longer delay out in steps of at most MAX_TIMER_MS instead.

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Like setTimeout (any delay, see setTimer), returns a cancel function. */
  setTimer(ms: number, fn: () => void): () => void;
}

/** The longest delay one setTimeout call honours. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * setTimeout for any delay: negative or NaN means now, a delay above MAX_TIMER_MS is waited out
 * in steps. The timer does not keep the process alive (unref). Returns a cancel function.
 */
export function setTimer(ms: number, fn: () => void): () => void {
  let left = Number.isFinite(ms) ? Math.max(0, ms) : ms > 0 ? Number.POSITIVE_INFINITY : 0;
  let t: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const step = Math.min(left, MAX_TIMER_MS);
    left -= step;
    t = setTimeout(left > 0 ? arm : fn, step);
    t.unref?.();
  };
  arm();
  return () => {
    if (t !== undefined) clearTimeout(t);
    t = undefined;
    left = 0;
  };
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer,
};
