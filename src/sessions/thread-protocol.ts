// The messages between the main thread and the SMTP session thread (thread-host.ts ⇄
// thread-main.ts). Every request from the thread carries a number `n` its answer repeats.
// Data crosses transferred (not copied) by postMessage: one buffer per message at the end of
// data, or, for a message over a chunk, a buffer per chunk as it completes (thread-sink.ts).
import type { ClientFacts } from '../admin/events.js';
import type { Config } from '../config/index.js';
import type { SmtpStatus } from '../errors.js';
import type { AcceptInput } from '../queue/index.js';
import type { ListenerRole } from './intake.js';

/** What the thread starts with. */
export interface ThreadData {
  config: Config;
  /** IdSource's shared cell and the memory budget's (queue/ids.ts, queue/data/budget.ts). */
  ids: SharedArrayBuffer;
  budget: SharedArrayBuffer;
  budgetLimit: number;
  /** Log levels the main thread's logger writes (the thread's lines go there). */
  levels: string[];
  /** Whether the main thread answers ETRN (etrn domains configured). */
  etrn: boolean;
}

/** A session's facts, enough to rebuild a SessionContext on the main thread (the ETRN hook). */
export interface ContextFacts {
  client: {
    ip: string;
    port: number;
    helo?: string;
    auth?: string;
    tls?: { protocol: string; cipher: string };
  };
  localAddress: string;
  localPort: number;
  loopback: boolean;
  submission: boolean;
}

export type ErrorWire = {
  message: string;
  code?: string;
  kind?: 'transient' | 'permanent';
  smtp?: SmtpStatus;
};

export type FromThread =
  | { t: 'ready'; bound: Array<{ role: ListenerRole; address: string; port: number }> }
  | { t: 'failed'; error: ErrorWire }
  | {
      t: 'accept';
      n: number;
      input: Omit<AcceptInput, 'data'>;
      /** The whole message, or the tail of the chunks that crossed before into spool `spool`. */
      data: Uint8Array;
      spool?: number;
      facts?: { id: string; sender: string; client: ClientFacts };
    }
  | { t: 'chunk'; n: number; msgId: number; data: Uint8Array }
  | { t: 'read'; n: number; msgId: number; reader: number }
  | { t: 'drop'; msgId: number }
  | { t: 'etrn'; n: number; node: string; ctx: ContextFacts }
  | { t: 'dns'; n: number; method: string; args: unknown[] }
  | { t: 'log'; level: 'error' | 'warn' | 'info' | 'debug'; fields: Record<string, unknown>; msg: string }
  | { t: 'count'; what: 'authResult' | 'dnsblListed' | 'dkimSigned'; args: string[] }
  | { t: 'stats'; open: number; accepted: number }
  | { t: 'stopped' };

export type ToThread =
  | { t: 'answer'; n: number; value?: unknown; error?: ErrorWire }
  | { t: 'refusal'; smtp: SmtpStatus | undefined; message?: string; code?: string }
  | { t: 'stop'; graceMs: number; keep: boolean }
  | { t: 'start'; data: ThreadData };

/** An error as it crosses the thread boundary: message, code, kind and SMTP status kept. */
export function errorWire(e: unknown): ErrorWire {
  const x = e as { message?: unknown; code?: unknown; kind?: unknown; smtp?: SmtpStatus } | undefined;
  const w: ErrorWire = { message: typeof x?.message === 'string' ? x.message : String(e) };
  if (typeof x?.code === 'string') w.code = x.code;
  if (x?.kind === 'transient' || x?.kind === 'permanent') w.kind = x.kind;
  if (x?.smtp) w.smtp = { ...x.smtp, ...(x.smtp.text !== undefined ? { text: x.smtp.text } : {}) };
  return w;
}
