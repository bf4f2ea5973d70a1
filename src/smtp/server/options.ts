// Options of one SMTP server session (and, extended in listener.ts, of a listener), with defaults.
// Invariant: resolveOptions returns a complete object; limits are positive. Fails with a TypeError
// on a nonsensical limit (a configuration bug, caught at start-up).

import { type Clock, systemClock } from '../../util/clock.js';
import type { ServerLogger } from './hooks.js';

/**
 * Per-IP AUTH failure throttle as seen by a session (implemented by AuthThrottle; a cluster's
 * shared throttle answers with promises).
 */
export interface AuthThrottleLike {
  isBlocked(ip: string): boolean | Promise<boolean>;
  /** Record a failure: how long to delay the 535, and whether the client is now blocked. */
  failure(ip: string): { delayMs: number; blocked: boolean } | Promise<{ delayMs: number; blocked: boolean }>;
  success(ip: string): void;
}

/** The events a client's rates count (client-rates.ts). */
export type RateKind = 'connection' | 'message' | 'recipient';

/**
 * Per-client event rates as the listener and the session see them (implemented by ClientRates;
 * in a cluster it answers with a promise: the count is in Redis).
 */
export interface ClientRatesLike {
  /** Counts one event of `kind` from `ip`; false: it is over the limit, refuse it. */
  allow(kind: RateKind, ip: string): boolean | Promise<boolean>;
}

export interface SessionOptions {
  /** Our host name, used in the greeting, EHLO and Received:. */
  hostname: string;
  /** Greeting text after "220 <hostname> ". */
  banner?: string;
  /** Advertised SIZE and enforced maximum message size in octets. */
  maxMessageSize?: number;
  /** RCPTs per transaction; more get 452 4.5.3. Below RFC 5321's 100 is the operator's choice
   *  (a `logmta check` notice says what it costs), so it is not refused here. */
  maxRecipients?: number;
  /** Text line limit in message data, octets incl. CRLF (0 = none). */
  maxLineLength?: number;
  /** Received: fields that mark a loop (554 5.4.6). */
  maxReceived?: number;
  /** Bad commands before 421 4.7.0 and close. */
  maxBadCommands?: number;
  /** NOOP/RSET/VRFY/HELP allowed without an accepted message before each counts as a bad command. */
  maxJunkCommands?: number;
  /** Silence (no byte at all) before 421 4.4.2 and close. */
  idleTimeoutMs?: number;
  /** A whole command line (or SASL line, or TLS handshake) must arrive within this (deadlines.ts). */
  commandTimeoutMs?: number;
  /** Each DATA line must arrive within this of the previous one; also the data-rate allowance's base. */
  dataLineTimeoutMs?: number;
  /** Minimum data rate of DATA/BDAT in octets per second (0 = none). */
  minDataRate?: number;
  /** Submission port: AUTH is required before MAIL (530 5.7.0). */
  submission?: boolean;
  /**
   * The server role of an ODMR customer after its ATRN (RFC 2645): the peer is the provider we
   * called, sending the mail of our account. Policy hooks see it in the SessionContext.
   */
  odmrCustomer?: boolean;
  /** Offer PLAIN/LOGIN without TLS to non-loopback clients (not recommended). */
  allowPlainWithoutTls?: boolean;
  /** Accept BODY=BINARYMIME (and advertise it). */
  binaryMime?: boolean;
  /** Pause reading while a hook is pending once this much input is buffered. */
  readPauseBytes?: number;
  /** Extra EHLO keywords (e.g. "ATRN" for an ODMR listener). */
  extraEhlo?: readonly string[];
  clock?: Clock;
  authThrottle?: AuthThrottleLike;
  /** Per-client rates of connections (listener), MAIL and RCPT (450 4.7.1); absent: none. */
  clientRates?: ClientRatesLike;
  logger?: ServerLogger;
}

export type ResolvedSessionOptions = Required<
  Omit<SessionOptions, 'authThrottle' | 'clientRates' | 'logger' | 'banner'>
> & {
  banner: string;
  authThrottle: AuthThrottleLike | undefined;
  clientRates: ClientRatesLike | undefined;
  logger: ServerLogger | undefined;
};

export function resolveOptions(o: SessionOptions): ResolvedSessionOptions {
  const r: ResolvedSessionOptions = {
    hostname: o.hostname,
    banner: o.banner ?? 'ESMTP logmta',
    maxMessageSize: o.maxMessageSize ?? 50 * 1024 * 1024,
    maxRecipients: o.maxRecipients ?? 1000,
    maxLineLength: o.maxLineLength ?? 1000,
    maxReceived: o.maxReceived ?? 100,
    maxBadCommands: o.maxBadCommands ?? 10,
    maxJunkCommands: o.maxJunkCommands ?? 100,
    idleTimeoutMs: o.idleTimeoutMs ?? 300_000,
    commandTimeoutMs: o.commandTimeoutMs ?? 300_000,
    dataLineTimeoutMs: o.dataLineTimeoutMs ?? 300_000,
    minDataRate: o.minDataRate ?? 500,
    submission: o.submission ?? false,
    odmrCustomer: o.odmrCustomer ?? false,
    allowPlainWithoutTls: o.allowPlainWithoutTls ?? false,
    binaryMime: o.binaryMime ?? false,
    readPauseBytes: o.readPauseBytes ?? 16 * 1024,
    extraEhlo: o.extraEhlo ?? [],
    clock: o.clock ?? systemClock,
    authThrottle: o.authThrottle,
    clientRates: o.clientRates,
    logger: o.logger,
  };
  for (const k of [
    'maxMessageSize',
    'maxRecipients',
    'maxBadCommands',
    'maxJunkCommands',
    'idleTimeoutMs',
    'commandTimeoutMs',
    'dataLineTimeoutMs',
    'maxReceived',
  ] as const) {
    if (!(r[k] > 0)) throw new TypeError(`SMTP server option ${k} must be positive`);
  }
  if (!(r.minDataRate >= 0)) throw new TypeError('SMTP server option minDataRate must not be negative');
  if (!r.hostname) throw new TypeError('SMTP server option hostname is required');
  return r;
}
