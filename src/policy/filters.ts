// Session filters (milters, DNSBL checks, ...) composed into the SMTP server's stage hooks.
// Each filter implements any of the stage hooks of smtp/server/hooks.ts; they are asked in
// order and the first refusal wins (later filters do not see that event, as Postfix does with
// several milters). Recipient and sender checks of our own policy run first: a filter only
// sees what we would accept.
// Invariant: with no filters nothing is composed — the hooks stay absent and the server's
// synchronous fast path is untouched.
import type { MaybePromise, ServerHooks, SessionContext, SmtpReply } from '../smtp/server/hooks.js';

export type SessionFilter = Pick<
  ServerHooks,
  'connect' | 'checkHelo' | 'checkSender' | 'checkRecipient' | 'checkData' | 'abort' | 'disconnect'
>;

type Check<A extends unknown[]> = (...args: A) => MaybePromise<SmtpReply | null>;

/** Asks each check in turn until one refuses; stays synchronous while the checks are. */
function firstRefusal<A extends unknown[]>(checks: Check<A>[]): Check<A> | undefined {
  if (checks.length === 0) return undefined;
  if (checks.length === 1) return checks[0];
  return (...args: A) => {
    const step = (i: number): MaybePromise<SmtpReply | null> => {
      for (; i < checks.length; i++) {
        const r = (checks[i] as Check<A>)(...args);
        if (r instanceof Promise) return r.then((v) => (v !== null ? v : step(i + 1)));
        if (r !== null) return r;
      }
      return null;
    };
    return step(0);
  };
}

function collect<K extends keyof SessionFilter>(filters: readonly SessionFilter[], k: K) {
  return filters.map((f) => f[k]).filter((h): h is NonNullable<SessionFilter[K]> => h !== undefined);
}

/** `base` with the filters' stage hooks added (our own checks before theirs). */
export function withFilters(base: ServerHooks, filters: readonly SessionFilter[]): ServerHooks {
  if (filters.length === 0) return base;
  const out: ServerHooks = { ...base };
  const connect = firstRefusal(collect(filters, 'connect'));
  if (connect) out.connect = connect;
  const helo = firstRefusal(collect(filters, 'checkHelo'));
  if (helo) out.checkHelo = helo;
  const data = firstRefusal(collect(filters, 'checkData'));
  if (data) out.checkData = data;
  const sender = firstRefusal([
    ...(base.checkSender ? [base.checkSender] : []),
    ...collect(filters, 'checkSender'),
  ]);
  if (sender) out.checkSender = sender;
  const rcpt = firstRefusal([
    ...(base.checkRecipient ? [base.checkRecipient] : []),
    ...collect(filters, 'checkRecipient'),
  ]);
  if (rcpt) out.checkRecipient = rcpt;
  const aborts = collect(filters, 'abort');
  if (aborts.length > 0)
    out.abort = (ctx: SessionContext) => {
      for (const a of aborts) a(ctx);
    };
  const discs = collect(filters, 'disconnect');
  if (discs.length > 0)
    out.disconnect = (ctx: SessionContext) => {
      for (const d of discs) d(ctx);
    };
  return out;
}
