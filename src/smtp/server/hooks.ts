// The contract between the SMTP server and the rest of logmta: what the server asks (hooks) and
// what it hands over (ReceivedMessage). The server owns protocol and limits; policy (relay control,
// users, credentials) and durability (the queue) live behind these hooks.
// Invariants: `accept` resolves only when the message is durable (DESIGN.md rule 1: 250 after DATA
// means durable); a rejection is an MtaError whose `smtp` status becomes the reply (451 4.3.0 when
// absent). Hooks may return plain values or promises; plain values keep the fast path synchronous.
// Filters that follow a whole session (milters, DNSBL) use the optional stage hooks: connect,
// checkHelo, checkSender, checkRecipient, checkData, then accept — or abort when the transaction
// ends without a message — and disconnect once at the end. The session object passed as `ctx` is
// the same for every call of one connection, so a filter may key its per-session state on it.
// Message data flows into a MessageSink while it arrives (openData: the queue streams it to disk;
// without the hook it is kept in memory), so the server never needs a whole message in memory.

import type { MailParams, NotifyType } from '../protocol/params.js';
import type { SmtpReply } from '../protocol/reply.js';

export type { SmtpReply } from '../protocol/reply.js';
export type MaybePromise<T> = T | Promise<T>;

export interface TlsInfo {
  /** e.g. "TLSv1.3" */
  protocol: string;
  /** OpenSSL cipher name, e.g. "TLS_AES_256_GCM_SHA384" */
  cipher: string;
}

/** Facts about the client, as they stand when read. */
export interface ClientInfo {
  ip: string;
  port: number;
  /** Argument of the last HELO/EHLO. */
  helo?: string;
  tls?: TlsInfo;
  /** Authenticated identity (AUTH). */
  auth?: string;
  /** The SASL mechanism that authenticated it ("PLAIN", "LOGIN", "CRAM-MD5"). */
  authMechanism?: string;
}

/** What hooks may read about the session that calls them. */
export interface SessionContext {
  readonly client: Readonly<ClientInfo>;
  readonly localAddress: string;
  readonly localPort: number;
  /** True when the client is on a loopback address. */
  readonly loopback: boolean;
  /** Submission mode (AUTH required before MAIL). */
  readonly submission: boolean;
  /** The server role of an ODMR customer after its ATRN: the peer is our provider. */
  readonly odmrCustomer?: boolean;
  /** Sender of the current transaction ('' = null sender); undefined outside a transaction. */
  readonly sender: string | undefined;
  /** Recipients accepted so far in the current transaction. */
  readonly recipientCount: number;
  /** Id of the current transaction's message (set once MAIL is accepted); undefined outside one. */
  readonly messageId: string | undefined;
}

export interface RecipientEntry {
  address: string;
  /** NOTIFY list; [] means NEVER; absent means not given. */
  notify?: NotifyType[];
  orcpt?: { type: string; address: string };
}

/** The data of a received message: our Received: header first, CRLF line ends, dot-unstuffed. */
export interface MessageData {
  /** Octets so far. */
  readonly size: number;
  /**
   * Reads the data back from the start, as a stream (for consumers that need the whole message
   * at the end of data, before it is accepted: DKIM signing, milters).
   */
  read(): AsyncIterable<Buffer>;
}

/** Where the server writes a message's data as it arrives. */
export interface MessageSink extends MessageData {
  /** Appends bytes (the sink may keep the Buffer). False: stop reading until drained() resolves. */
  write(chunk: Buffer): boolean;
  /** Resolves when writing may go on; never rejects (a failure shows in accept()). */
  drained(): Promise<void>;
  /** The transaction ended without accept(): drop the data. Idempotent; a no-op after accept. */
  abort(): void;
}

export interface ReceivedMessage {
  /** From newMessageId(), generated at MAIL and written into our Received: header. */
  id: string;
  /** Return path; '' for the null sender. */
  sender: string;
  recipients: RecipientEntry[];
  params: Pick<MailParams, 'ret' | 'envid' | 'body' | 'smtputf8' | 'size'>;
  /**
   * Message bytes: our own Received: header first (`received` is that header, the sink's first
   * write), CRLF line endings, dot-unstuffed. Streamed into the sink as they arrived (the daemon's
   * sink is a queue spool); `data.read()` reads them back.
   */
  data: MessageSink;
  /** Our Received: header field (the first bytes of `data`). */
  received?: Buffer;
  /** Total octets in `data`. */
  size: number;
  client: ClientInfo;
  /** Milliseconds since the epoch, when the end of data was received. */
  receivedAt: number;
}

export interface ServerHooks {
  /** A fresh, unique message id (also the queue id the client will see). */
  newMessageId(): string;
  /**
   * A client connected; called before the greeting. Null: 220. A 421 is sent as the greeting and
   * the connection closed. Any other refusal persists for the whole session (as Postfix does for
   * milters): the greeting is 554 for a 5xx, 220 for a 4xx, and every MAIL and ETRN gets it.
   */
  connect?(ctx: SessionContext): MaybePromise<SmtpReply | null>;
  /**
   * HELO/EHLO with a syntactically valid name. A 421 is sent and the connection closed; any other
   * refusal is kept until the next HELO/EHLO and given to every MAIL (the HELO itself gets 250,
   * Sendmail/Postfix milter behaviour, so that clients see a reason at MAIL).
   */
  checkHelo?(name: string, ctx: SessionContext): MaybePromise<SmtpReply | null>;
  /**
   * Return a reply to refuse the sender, null to accept. `params` are the ESMTP parameters as the
   * client wrote them (e.g. "SIZE=1234"), already validated.
   */
  checkSender?(
    address: string,
    ctx: SessionContext,
    params?: readonly string[],
  ): MaybePromise<SmtpReply | null>;
  /**
   * Relay control and recipient validation: null to accept, or e.g. 550 5.1.1 (unknown user),
   * 554 5.7.1 (relay denied), 450/451 (temporary). `params` as for checkSender.
   */
  checkRecipient?(
    address: string,
    ctx: SessionContext,
    params?: readonly string[],
  ): MaybePromise<SmtpReply | null>;
  /**
   * DATA, or the first BDAT of a transaction: a reply refuses the message before its data.
   * (For every check: a 421 refusal also closes the connection, RFC 5321 3.8.)
   */
  checkData?(ctx: SessionContext): MaybePromise<SmtpReply | null>;
  /**
   * The transaction in progress ended without reaching `accept`: RSET, a new HELO/EHLO, a refused
   * DATA/BDAT or body, a failed handler. Not called for a transaction that reached `accept`.
   */
  abort?(ctx: SessionContext): void;
  /** The connection closed or was handed to another role; called once per session that started. */
  disconnect?(ctx: SessionContext): void;
  /** Verify a PLAIN/LOGIN password. Absent: PLAIN and LOGIN are not offered. */
  verifyPassword?(username: string, password: string, ctx: SessionContext): MaybePromise<boolean>;
  /** The shared secret for CRAM-MD5, or null for an unknown user. Absent: CRAM-MD5 is not offered. */
  cramSecret?(username: string, ctx: SessionContext): MaybePromise<string | null>;
  /**
   * Called at MAIL: a reply refuses the new transaction before it starts (452 4.3.1 while too
   * much mail is held in memory); null lets it go on.
   */
  admitTransaction?(ctx: SessionContext): SmtpReply | null;
  /**
   * The sink for a message's data, opened when the data starts (354 to DATA, the first BDAT),
   * with the id from newMessageId. Absent: the data is kept in memory (BufferedData).
   */
  openData?(id: string, ctx: SessionContext): MessageSink;
  /**
   * Take responsibility for a message; resolve only when it is durable. `ctx` is the session that
   * received it (absent for local submissions, which have none). On rejection the server aborts
   * the sink.
   */
  accept(message: ReceivedMessage, ctx?: SessionContext): Promise<{ queueId: string }>;
  /** ETRN (RFC 1985); when present ETRN is advertised. Answer at once (250/251/252/253/458/459). */
  etrn?(node: string, ctx: SessionContext): MaybePromise<SmtpReply>;
}

/** Minimal pino-compatible logger. */
export interface ServerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}
