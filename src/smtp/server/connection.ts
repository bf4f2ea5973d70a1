// One client connection: owns the socket (plain, TLS after STARTTLS, or TLS from the first byte
// on an implicit-TLS listener, RFC 8314) and feeds its SmtpSession.
// The socket and its TLS state belong to this object, not to the session, so that an ODMR ATRN
// turnaround can take them away (detach) and give them to the client role without closing them.
// Invariants: after STARTTLS, bytes read in plaintext are never fed to the session (the session
// drops them; the raw socket's data listener is removed before the TLS wrap); on an implicit-TLS
// listener nothing is read or written in plaintext — the greeting waits for the handshake;
// after detach() or close the session sees no more input and writes nothing.
// The peer's end of input (a half-close) is passed to the session, which still answers what was
// sent before it and then closes (the listener's sockets are half-open capable for this).
// Fails: socket errors end the connection (logged at debug); TLS handshake failures destroy it.

import type * as net from 'node:net';
import * as tls from 'node:tls';
import type { ServerHooks, ServerLogger } from './hooks.js';
import type { CommandTable } from './commands/table.js';
import type { SessionOptions } from './options.js';
import { type SessionIo, SmtpSession } from './session.js';

export type AnySocket = net.Socket | tls.TLSSocket;

/** What a connection needs from the listener that owns it. */
export interface ConnectionOwner {
  readonly sessionOptions: SessionOptions;
  readonly hooks: ServerHooks;
  readonly commands: CommandTable | undefined;
  readonly secureContext: tls.SecureContext | undefined;
  /** TLS from the first byte (port 465 style): no STARTTLS, the greeting follows the handshake. */
  readonly implicitTls: boolean;
  readonly logger: ServerLogger | undefined;
  now(): number;
  /** The connection is gone (closed or detached). */
  released(conn: Connection): void;
  /** The session handed the socket over (ATRN); false: nobody takes it, it is destroyed. */
  handOver(conn: Connection, socket: AnySocket, pending: Buffer): boolean;
}

export class Connection implements SessionIo {
  socket: AnySocket;
  readonly session: SmtpSession;
  readonly remoteAddress: string;
  /** When we started closing (0 = open); the listener destroys sockets that linger. */
  closingSince = 0;
  startTls?: () => void;
  private released = false;

  constructor(
    socket: net.Socket,
    private readonly owner: ConnectionOwner,
  ) {
    this.socket = socket;
    this.remoteAddress = socket.remoteAddress ?? '0.0.0.0';
    socket.setNoDelay(true);
    const implicit = owner.implicitTls && owner.secureContext !== undefined;
    if (owner.secureContext && !implicit) this.startTls = () => this.upgrade();
    this.session = new SmtpSession(
      owner.sessionOptions,
      owner.hooks,
      this,
      {
        remoteAddress: this.remoteAddress,
        remotePort: socket.remotePort ?? 0,
        localAddress: socket.localAddress ?? '',
        localPort: socket.localPort ?? 0,
      },
      owner.commands,
    );
    if (implicit) {
      // Implicit TLS: the session waits in 'tls' mode (bounded like any wait for the client)
      // and greets only once the handshake is done.
      this.session.awaitTls();
      this.wrapTls(socket, () => this.session.start());
      return;
    }
    this.bindLife(socket);
    this.bindIo(socket);
    this.session.start();
  }

  // --- SessionIo ---
  write(data: string): boolean {
    const s = this.socket;
    if (s.destroyed || !s.writable) return true;
    return s.write(data);
  }

  close(destroy = false): void {
    if (this.closingSince === 0) this.closingSince = this.owner.now();
    if (destroy) this.socket.destroy();
    else this.socket.end();
  }

  setReading(on: boolean): void {
    if (on) this.socket.resume();
    else this.socket.pause();
  }

  handOver(pending: Buffer): void {
    const socket = this.release();
    if (!this.owner.handOver(this, socket, pending)) socket.destroy();
  }

  /**
   * Take the socket away from the server role without closing it: the session stops, listeners are
   * removed and the unconsumed input is returned with the socket.
   */
  detach(): { socket: AnySocket; pendingBytes: Buffer } {
    const pendingBytes = this.session.detach();
    return { socket: this.release(), pendingBytes };
  }

  // --- internals ---
  private readonly onData = (chunk: Buffer): void => this.session.feed(chunk);
  private readonly onDrain = (): void => this.session.onDrain();
  private readonly onEnd = (): void => this.session.onEnd();
  private readonly onClose = (): void => {
    this.session.onClose();
    this.finish();
  };
  private readonly onError = (e: Error): void => {
    this.owner.logger?.debug({ ip: this.remoteAddress, err: e.message }, 'smtp socket error');
  };

  private bindIo(s: AnySocket): void {
    s.on('data', this.onData);
    s.on('drain', this.onDrain);
  }

  private bindLife(s: AnySocket): void {
    s.on('end', this.onEnd);
    s.on('close', this.onClose);
    s.on('error', this.onError);
  }

  private unbind(s: AnySocket): void {
    s.off('data', this.onData);
    s.off('drain', this.onDrain);
    s.off('end', this.onEnd);
    s.off('close', this.onClose);
    s.off('error', this.onError);
  }

  private release(): AnySocket {
    this.unbind(this.socket);
    // The listener accepts half-open sockets for the server role only (session.onEnd); the next
    // owner gets Node's default, where the peer's end closes our side too.
    this.socket.allowHalfOpen = false;
    this.finish();
    return this.socket;
  }

  private finish(): void {
    if (this.released) return;
    this.released = true;
    this.owner.released(this);
  }

  /** STARTTLS: wrap the same socket. Called synchronously right after the 220 was written. */
  private upgrade(): void {
    const raw = this.socket as net.Socket;
    // Remove our plaintext listeners first: nothing read from here on may reach the session
    // except through TLS.
    this.unbind(raw);
    this.wrapTls(raw);
  }

  /** Server-side TLS on `raw`; the session learns of it (and `then` runs) after the handshake. */
  private wrapTls(raw: net.Socket, then?: () => void): void {
    const ctx = this.owner.secureContext;
    raw.on('error', () => {});
    const ts = new tls.TLSSocket(raw, { isServer: true, ...(ctx ? { secureContext: ctx } : {}) });
    this.socket = ts;
    this.bindLife(ts);
    ts.once('secure', () => {
      this.bindIo(ts);
      this.session.tlsStarted({
        protocol: ts.getProtocol() ?? 'unknown',
        cipher: ts.getCipher()?.name ?? 'unknown',
      });
      then?.();
    });
    ts.once('error', () => ts.destroy());
  }
}
