// Options and result types shared by the client session and its transaction code, and the
// error type the handshake fails with. Types only, plus defaults.

import type tls from 'node:tls';
import { MtaError } from '../../errors.js';
import type { Clock } from '../../util/clock.js';
import type { AuthCredentials } from './auth.js';
import type { OutboundRecipient } from './params.js';
import type { Reply, ReplyLimits } from './reply.js';

/** Client timeouts in milliseconds; the defaults are RFC 5321 §4.5.3.2's minimums. */
export interface SmtpTimeouts {
  connect: number;
  greeting: number;
  /** EHLO, HELO, STARTTLS, AUTH, RSET. */
  command: number;
  mail: number;
  rcpt: number;
  dataStart: number;
  dataBlock: number;
  dataEnd: number;
  quit: number;
}

export const defaultTimeouts: SmtpTimeouts = {
  connect: 30_000,
  greeting: 300_000,
  command: 300_000,
  mail: 300_000,
  rcpt: 300_000,
  dataStart: 120_000,
  dataBlock: 180_000,
  dataEnd: 600_000,
  quit: 30_000,
};

export interface TlsPolicy {
  /** none: never STARTTLS; opportunistic: when offered; required: fail unless TLS is established. */
  mode: 'none' | 'opportunistic' | 'required';
  /** Verify the peer's certificate chain and name. Default false (as Postfix "may"/"encrypt"). */
  verify?: boolean;
  /** SNI and the name checked when verifying; default the host connected to. */
  servername?: string;
  ca?: tls.SecureContextOptions['ca'];
  minVersion?: tls.SecureVersion;
  /** A context to use as is (its trust store shared by many connections); `ca` is then unused. */
  secureContext?: tls.SecureContext;
  /**
   * Who requires TLS ("MTA-STS policy of example.com"), for failures to name: a destination
   * whose every host fails the TLS requirement is then deferred with 4.7.5, not 4.4.1.
   */
  requiredBy?: string;
  /**
   * A check of the peer's certificates right after the handshake, before anything else is sent
   * (DANE: its TLSA records); a failure ends the session with a `starttls` error, and never
   * falls back to plain text.
   */
  peerCheck?: (socket: tls.TLSSocket) => { ok: true; how: string } | { ok: false; why: string };
}

export interface SmtpClientOptions {
  /** Our name in EHLO/HELO. */
  name: string;
  clock?: Clock;
  timeouts?: Partial<SmtpTimeouts>;
  /** Default: opportunistic, unverified. */
  tls?: TlsPolicy;
  auth?: AuthCredentials;
  limits?: Partial<ReplyLimits>;
  /** Use BDAT when the peer offers CHUNKING. Default true. */
  chunking?: boolean;
  /** Send RSET before every message after the first on a connection. Default true; when false,
   *  RSET is only sent after an aborted transaction. */
  rsetBeforeReuse?: boolean;
  localAddress?: string;
  /**
   * Speak LMTP (RFC 2033): LHLO instead of EHLO (no HELO fallback), and one reply per accepted
   * recipient after the data. Default false.
   */
  lmtp?: boolean;
  /** Connect to this unix-domain socket instead of host:port (LMTP to a local mailbox server). */
  socketPath?: string;
}

export interface OutboundTransaction {
  /** Return path; "" is the null sender. */
  sender: string;
  recipients: OutboundRecipient[];
  ret?: 'FULL' | 'HDRS';
  /** Decoded ENVID. */
  envid?: string;
  /** Message size in bytes (for SIZE=); the data as stored. */
  size: number;
  /** The original client asked for SMTPUTF8. */
  smtputf8?: boolean;
  /** The body contains 8-bit data (BODY=8BITMIME). */
  body8bit?: boolean;
  /** The message was received as BODY=BINARYMIME: it goes only to a hop offering BINARYMIME and
   *  CHUNKING, since binary data cannot be converted (RFC 3030). */
  binary?: boolean;
  /** Message data as stored (CRLF lines, not dot-stuffed). */
  data: readonly Buffer[] | AsyncIterable<Buffer>;
}

export type RecipientStatus = 'delivered' | 'deferred' | 'failed';

export interface RecipientResult {
  /** Index into tx.recipients. */
  index: number;
  code: number;
  /** Enhanced status; the peer's, or "<class>.0.0" when it sent none. */
  enhanced: string;
  text: string;
  status: RecipientStatus;
  /** True when code/enhanced/text are the peer's reply; false when synthesized locally. */
  remote: boolean;
  /** The stage that decided: local check, MAIL, RCPT, DATA/BDAT, or the connection failing. */
  stage: 'local' | 'mail' | 'rcpt' | 'data' | 'connection';
  /** 452 (4.5.3) to RCPT: too many recipients in this transaction, retry them in the next one. */
  tooManyRecipients?: true;
}

export interface SendResult {
  /** One result per recipient of the transaction, in order. */
  recipients: RecipientResult[];
  /** Whether another message may be sent on this connection. */
  reusable: boolean;
  /**
   * The session was over before the peer took any part of this transaction: closed before or at
   * RSET/MAIL, or 421 (closing) to either — a kept connection the peer had given up on (its idle
   * timeout, a limit of messages per session). No data was sent: a new connection may carry the
   * message at once, and it is no sign the destination is in trouble.
   */
  stale?: true;
}

export type HandshakeStage = 'connect' | 'greeting' | 'ehlo' | 'starttls' | 'auth';

/** A failure before any message could be sent. `reply` is the peer's reply when there was one. */
export class SmtpClientError extends MtaError {
  readonly stage: HandshakeStage;
  readonly reply: Reply | undefined;

  constructor(
    stage: HandshakeStage,
    message: string,
    opts: { reply?: Reply; cause?: unknown; kind?: 'transient' | 'permanent' } = {},
  ) {
    const reply = opts.reply;
    const permanent = reply !== undefined && reply.code >= 500;
    const smtp = reply
      ? { code: reply.code, enhanced: reply.enhanced ?? (permanent ? '5.0.0' : '4.0.0') }
      : { code: 451, enhanced: '4.4.2' };
    super(`SMTP_${stage.toUpperCase()}`, opts.kind ?? (permanent ? 'permanent' : 'transient'), message, {
      smtp,
      cause: opts.cause,
    });
    this.name = 'SmtpClientError';
    this.stage = stage;
    this.reply = reply;
  }
}
