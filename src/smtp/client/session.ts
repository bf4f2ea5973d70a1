// One outbound SMTP session: greeting, EHLO (HELO fallback on 5xx), opportunistic or required
// STARTTLS with a fresh EHLO afterwards, AUTH when credentials are configured, then any number of
// messages (transaction.ts) and QUIT. Works on a new TCP connection or on an adopted socket (the
// ODMR turnaround), which may already be TLS and may come with bytes already read.
// Invariant: a session is used by one caller at a time; once `usable` is false it never becomes
// true again. Handshake failures reject with SmtpClientError (stage + peer reply); failures while
// sending a message never reject — they become "deferred" results (see transaction.ts).

import net from 'node:net';
import tls from 'node:tls';
import { errorText, MtaError } from '../../errors.js';
import { type AuthMechanism, authenticate } from './auth.js';
import { SmtpConnection } from './connection.js';
import { type Extensions, noExtensions, parseEhlo } from './extensions.js';
import {
  defaultTimeouts,
  type OutboundTransaction,
  type SendResult,
  SmtpClientError,
  type SmtpClientOptions,
  type SmtpTimeouts,
  type TlsPolicy,
} from './options.js';
import type { Reply } from './reply.js';
import { describeReply } from '../protocol/reply.js';
import { sendTransaction, type TransactionState } from './transaction.js';

export interface AdoptOptions extends SmtpClientOptions {
  /** Bytes already read from the socket that belong to the client role (e.g. an early greeting). */
  initialBytes?: Buffer;
  /**
   * The peer's greeting, already read by someone else (a proxy that served another session on
   * this socket first): not waited for again; the handshake starts with EHLO, which also resets
   * whatever state the peer's session was in.
   */
  greeting?: Reply;
}

export class SmtpClient {
  readonly connection: SmtpConnection;
  readonly timeouts: SmtpTimeouts;
  private readonly opts: SmtpClientOptions;
  private ext: Extensions = noExtensions();
  private greet: Reply | undefined;
  private mech: AuthMechanism | undefined;
  private checked: string | undefined;
  private readonly state: TransactionState = { messages: 0, dirty: false, busy: false };

  private constructor(conn: SmtpConnection, opts: SmtpClientOptions) {
    this.connection = conn;
    this.opts = opts;
    this.timeouts = { ...defaultTimeouts, ...opts.timeouts };
  }

  /**
   * Connects and runs the handshake. With opportunistic TLS, a failed TLS handshake is retried
   * once in plain text on a new connection (as Postfix does), since the old one is unusable.
   */
  static async connect(host: string, port: number, opts: SmtpClientOptions): Promise<SmtpClient> {
    const policy = opts.tls ?? { mode: 'opportunistic' };
    try {
      return await SmtpClient.connectOnce(host, port, opts, policy);
    } catch (e) {
      if (e instanceof SmtpClientError && e.stage === 'starttls' && e.reply === undefined) {
        if (policy.mode === 'opportunistic') {
          return await SmtpClient.connectOnce(host, port, opts, { ...policy, mode: 'none' });
        }
      }
      throw e;
    }
  }

  private static async connectOnce(
    host: string,
    port: number,
    opts: SmtpClientOptions,
    policy: TlsPolicy,
  ): Promise<SmtpClient> {
    const timeouts = { ...defaultTimeouts, ...opts.timeouts };
    let conn: SmtpConnection;
    try {
      const copts: Parameters<typeof SmtpConnection.connect>[2] = { connectTimeoutMs: timeouts.connect };
      if (opts.clock) copts.clock = opts.clock;
      if (opts.limits) copts.limits = opts.limits;
      if (opts.localAddress !== undefined) copts.localAddress = opts.localAddress;
      if (opts.socketPath !== undefined) copts.path = opts.socketPath;
      conn = await SmtpConnection.connect(host, port, copts);
    } catch (e) {
      throw new SmtpClientError('connect', errorText(e), { cause: e });
    }
    const client = new SmtpClient(conn, { ...opts, tls: policy });
    await client.handshake(policy.servername ?? (net.isIP(host) !== 0 ? undefined : host));
    return client;
  }

  /** Takes over an already-connected socket (plain or TLS) and runs the handshake on it. */
  static async adopt(socket: net.Socket, opts: AdoptOptions): Promise<SmtpClient> {
    const copts: ConstructorParameters<typeof SmtpConnection>[1] = {};
    if (opts.clock) copts.clock = opts.clock;
    if (opts.limits) copts.limits = opts.limits;
    if (opts.initialBytes) copts.initialBytes = opts.initialBytes;
    const client = new SmtpClient(new SmtpConnection(socket, copts), opts);
    await client.handshake(opts.tls?.servername, opts.greeting);
    return client;
  }

  get extensions(): Extensions {
    return this.ext;
  }

  get greeting(): Reply | undefined {
    return this.greet;
  }

  get secure(): boolean {
    return this.connection.secure;
  }

  /**
   * The peer's certificate as the TLS handshake judged it — chain to the trust store the session
   * was made with, and the name (SNI) it was asked for — or undefined without TLS. With `verify`
   * a session exists only if it was valid; without, this says whether it would have been.
   */
  get tlsPeer(): { authorized: boolean; error: string | undefined; verified: boolean } | undefined {
    const s = this.connection.socket;
    if (!(s instanceof tls.TLSSocket) || !this.connection.secure) return undefined;
    const err = s.authorizationError as unknown;
    return {
      authorized: s.authorized,
      error: err === null || err === undefined ? undefined : err instanceof Error ? err.message : String(err),
      verified: s.authorized && this.opts.tls?.verify === true,
    };
  }

  /** What the TLS policy's peerCheck matched ("DANE-EE 1 1"), when it had one and it passed. */
  get peerChecked(): string | undefined {
    return this.checked;
  }

  get authenticated(): AuthMechanism | undefined {
    return this.mech;
  }

  /** True while another message may be sent on this session. */
  get usable(): boolean {
    return this.connection.alive && !this.state.busy;
  }

  /** Messages whose end-of-data reply was received on this session. */
  get messagesSent(): number {
    return this.state.messages;
  }

  /**
   * Sends one message; never rejects for network or protocol trouble (those become deferrals).
   * `onDataSent`: called when the session may already carry the next message, while this one
   * waits for its final reply (see TransactionOptions.onDataSent; not always called).
   */
  sendMessage(tx: OutboundTransaction, how: { onDataSent?: () => void } = {}): Promise<SendResult> {
    if (this.state.busy) {
      return Promise.reject(
        new MtaError('SMTP_CLIENT_BUSY', 'transient', 'session already sending a message'),
      );
    }
    return sendTransaction(this.connection, this.ext, tx, this.state, {
      timeouts: this.timeouts,
      chunking: this.opts.chunking !== false,
      rsetBeforeReuse: this.opts.rsetBeforeReuse !== false,
      lmtp: this.opts.lmtp === true,
      ...(how.onDataSent !== undefined && { onDataSent: how.onDataSent }),
    });
  }

  /** Sends QUIT, waits briefly for the reply and closes. Never rejects. */
  async quit(): Promise<void> {
    const conn = this.connection;
    if (!conn.alive) return;
    try {
      await conn.send('QUIT\r\n', this.timeouts.quit, 'QUIT reply');
      conn.end();
    } catch {
      conn.close();
    }
  }

  /** Closes at once without QUIT. */
  close(): void {
    this.connection.close();
  }

  private async handshake(servername: string | undefined, greeted?: Reply): Promise<void> {
    const conn = this.connection;
    const t = this.timeouts;
    try {
      this.greet = greeted ?? (await conn.expect(t.greeting, 'greeting'));
    } catch (e) {
      throw new SmtpClientError('greeting', errorText(e), { cause: e });
    }
    if (this.greet.code !== 220) {
      const r = this.greet;
      await this.quit();
      throw new SmtpClientError('greeting', `${conn.remote} greeted with ${describeReply(r)}`, { reply: r });
    }
    await this.hello();
    const policy = this.opts.tls ?? { mode: 'opportunistic' };
    if (!conn.secure && policy.mode !== 'none') {
      if (this.ext.starttls) await this.startTls(policy, servername);
      else if (policy.mode === 'required') {
        await this.quit();
        throw new SmtpClientError('starttls', `TLS is required, but ${conn.remote} does not offer STARTTLS`, {
          kind: 'transient',
        });
      }
    }
    if (this.opts.auth) {
      try {
        this.mech = await authenticate(conn, this.ext.auth, this.opts.auth, t.command);
      } catch (e) {
        await this.quit();
        // Authentication trouble is a configuration problem: always transient (Postfix "soft bounce").
        throw new SmtpClientError('auth', errorText(e), { cause: e, kind: 'transient' });
      }
    }
  }

  private async hello(): Promise<void> {
    const conn = this.connection;
    const t = this.timeouts;
    const verb = this.opts.lmtp ? 'LHLO' : 'EHLO';
    try {
      const r = await conn.send(`${verb} ${this.opts.name}\r\n`, t.command, `${verb} reply`);
      if (r.code === 250) {
        this.ext = parseEhlo(r);
        return;
      }
      if (this.opts.lmtp) {
        // RFC 2033 4.1: an LMTP server has no HELO to fall back to.
        await this.quit();
        throw new SmtpClientError('ehlo', `${conn.remote} refused LHLO: ${describeReply(r)}`, { reply: r });
      }
      if (r.code < 500) {
        await this.quit();
        throw new SmtpClientError('ehlo', `${conn.remote} refused EHLO: ${describeReply(r)}`, { reply: r });
      }
      const h = await conn.send(`HELO ${this.opts.name}\r\n`, t.command, 'HELO reply');
      if (h.code !== 250) {
        await this.quit();
        throw new SmtpClientError('ehlo', `${conn.remote} refused HELO: ${describeReply(h)}`, { reply: h });
      }
      this.ext = noExtensions();
    } catch (e) {
      if (e instanceof SmtpClientError) throw e;
      throw new SmtpClientError('ehlo', errorText(e), { cause: e });
    }
  }

  private async startTls(policy: TlsPolicy, servername: string | undefined): Promise<void> {
    const conn = this.connection;
    let r: Reply;
    try {
      r = await conn.send('STARTTLS\r\n', this.timeouts.command, 'STARTTLS reply');
    } catch (e) {
      throw new SmtpClientError('starttls', errorText(e), { cause: e });
    }
    if (r.code !== 220) {
      if (policy.mode === 'required') {
        await this.quit();
        throw new SmtpClientError('starttls', `${conn.remote} refused STARTTLS: ${describeReply(r)}`, {
          reply: r,
          kind: 'transient',
        });
      }
      return; // opportunistic: carry on in plain text
    }
    const topts: tls.ConnectionOptions = { rejectUnauthorized: policy.verify === true };
    if (servername !== undefined) topts.servername = servername;
    if (policy.secureContext !== undefined) topts.secureContext = policy.secureContext;
    else if (policy.ca !== undefined) topts.ca = policy.ca;
    if (policy.minVersion !== undefined) topts.minVersion = policy.minVersion;
    try {
      await conn.startTls(topts, this.timeouts.command);
    } catch (e) {
      throw new SmtpClientError('starttls', `TLS handshake with ${conn.remote} failed: ${errorText(e)}`, {
        cause: e,
      });
    }
    if (policy.peerCheck !== undefined) {
      const v = policy.peerCheck(conn.socket as tls.TLSSocket);
      if (!v.ok) {
        await this.quit();
        throw new SmtpClientError('starttls', v.why, { kind: 'transient' });
      }
      this.checked = v.how;
    }
    // RFC 3207 §4.2: forget everything learnt before TLS and ask again.
    this.ext = noExtensions();
    await this.hello();
  }
}
