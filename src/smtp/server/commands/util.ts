// Small helpers for command handlers: run a continuation on a value that may be a promise without
// paying for a microtask when it is not (the synchronous hook fast path).

import type { MaybePromise } from '../hooks.js';

function isPromise<T>(v: MaybePromise<T>): v is Promise<T> {
  return typeof (v as { then?: unknown } | null)?.then === 'function';
}

export function settle<T>(v: MaybePromise<T>, fn: (v: T) => void | Promise<void>): void | Promise<void> {
  return isPromise(v) ? v.then(fn) : fn(v);
}
