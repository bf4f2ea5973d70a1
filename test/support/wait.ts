// Waiting in tests: on a condition, never on the wall clock. `waitFor` polls a condition until it
// holds (the deadline is only there to turn a hang into a failure that names what it waited
// for, never to decide an outcome); `tick` lets the promise chains and I/O callbacks that are
// ready run, without waiting for time to pass.
// Invariant: nothing here decides a test by elapsed time; a slow machine makes a test slower,
// never red (unless it is slower than the deadline, which is generous on purpose).
// Fails: waitFor rejects with "timed out after N ms waiting for <what>".

const POLL_MS = 2;

/**
 * Resolves once `cond` holds (checked at once, then every few milliseconds); rejects naming
 * `what` after `timeoutMs` (default 10 s).
 */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what = 'condition',
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** One turn of the event loop: pending promise reactions and ready I/O callbacks run. */
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** `n` turns of the event loop (for code that chains a few promises before it acts). */
export async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await tick();
}

/** Pacing for load generators and random kill moments only — never to wait for an outcome. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
