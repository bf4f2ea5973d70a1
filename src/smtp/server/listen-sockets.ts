// Listening sockets that outlive the daemon using them, so that a reload (SIGHUP: the daemon
// stopped and started again in the same process) never closes a port it serves before and after:
// clients that connect meanwhile are not refused by the kernel, and connections already in the
// kernel's accept queue are not reset. While no listener is attached, accepted connections wait
// (parked, unread) and are handed to the next listener that attaches; they see nothing but a
// greeting that comes a little later. `logmta serve` owns one set for its whole life; a daemon
// started without one binds its own servers, as before.
// Invariant: one net.Server per configured host:port; a parked connection is either handed to a
// listener, refused with 421 when its socket is closed, or destroyed by the park cap.
// Fails: open() rejects with the server's error (EADDRINUSE, EACCES) for a port not yet bound.

import * as net from 'node:net';

/** Connections kept waiting per socket while no listener is attached; further ones are dropped. */
const PARK_LIMIT = 1000;

/** One listening socket, attachable to a listener at a time. */
export class ListenSocket {
  private accept: ((s: net.Socket) => void) | null = null;
  private readonly parked: net.Socket[] = [];
  private closed = false;

  constructor(
    readonly key: string,
    readonly server: net.Server,
  ) {
    server.on('connection', (s) => {
      if (this.accept) this.accept(s);
      else this.park(s);
    });
  }

  get address(): net.AddressInfo {
    return this.server.address() as net.AddressInfo;
  }

  /** Connections waiting for a listener. */
  get waiting(): number {
    return this.parked.length;
  }

  get attached(): boolean {
    return this.accept !== null;
  }

  /** Routes new connections to `accept`, first those that waited. */
  attach(accept: (s: net.Socket) => void): void {
    this.accept = accept;
    for (const s of this.parked.splice(0)) if (!s.destroyed) accept(s);
  }

  /** Stops routing: connections wait for the next attach (or the close). */
  detach(): void {
    this.accept = null;
  }

  /**
   * Stops listening (the kernel refuses new connections from now on); waiting connections get
   * `refusal` (a 421 line) and are closed. Connections a listener took are its own to end.
   */
  close(refusal: string): void {
    if (this.closed) return;
    this.closed = true;
    this.accept = null;
    this.server.close();
    for (const s of this.parked.splice(0)) {
      s.setTimeout(10_000, () => s.destroy());
      s.end(refusal);
    }
  }

  private park(s: net.Socket): void {
    s.on('error', () => {});
    if (this.parked.length >= PARK_LIMIT) {
      s.destroy();
      return;
    }
    this.parked.push(s);
    s.once('close', () => {
      const i = this.parked.indexOf(s);
      if (i >= 0) this.parked.splice(i, 1);
    });
  }
}

/** The listening sockets of a process, by configured host and port, kept across reloads. */
export class ListenSockets {
  private readonly sockets = new Map<string, ListenSocket>();

  /**
   * The socket for host:port: one already bound and not attached, or a new one (port 0 named
   * twice gets two sockets, each kept under its own key).
   */
  async open(host: string, port: number): Promise<ListenSocket> {
    let key = `${host}|${port}`;
    for (let i = 1; ; i++) {
      const had = this.sockets.get(key);
      if (had === undefined) break;
      if (!had.attached) return had;
      key = `${host}|${port}#${i}`;
    }
    // allowHalfOpen: see SmtpListener (a client that half-closes still gets every reply).
    const server = net.createServer({ noDelay: true, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const sock = new ListenSocket(key, server);
    this.sockets.set(key, sock);
    return sock;
  }

  /** Closes every socket no listener is attached to (a port the new configuration dropped). */
  closeUnattached(refusal: string): void {
    for (const [key, s] of this.sockets)
      if (!s.attached) {
        this.sockets.delete(key);
        s.close(refusal);
      }
  }

  /** Closes them all (the process stops). */
  closeAll(refusal: string): void {
    for (const s of this.sockets.values()) s.close(refusal);
    this.sockets.clear();
  }
}
