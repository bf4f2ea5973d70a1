// Listening sockets that outlive the daemon using them, so that a reload (SIGHUP: the daemon
// stopped and started again in the same process) never closes a port or socket path it serves
// before and after: clients that connect meanwhile are not refused by the kernel, and
// connections already in the kernel's accept queue are not reset. While no listener is
// attached, accepted connections wait (parked, unread) and are handed to the next listener that
// attaches; they see nothing but an answer that comes a little later. Used by every door of the
// daemon: the SMTP listeners, the ODMR listeners and the HTTP admin (TCP, open) and the control
// socket (UNIX, openPath). `logmta serve` owns one set for its whole life; a daemon started without one binds
// its own servers, as before.
// Invariant: one net.Server per configured host:port or path; a parked connection is either
// handed to a listener, refused (the socket's refusal line) when its socket is closed, or
// destroyed by the park cap. A UNIX socket's file goes with its socket (the close unlinks it).
// Fails: open() and openPath() reject with the server's error (EADDRINUSE, EACCES) for an
// address not yet bound.

import * as net from 'node:net';

/** Connections kept waiting per socket while no listener is attached; further ones are dropped. */
const PARK_LIMIT = 1000;

/** One listening socket, attachable to a listener at a time. */
export class ListenSocket {
  private accept: ((s: net.Socket) => void) | null = null;
  private readonly parked: net.Socket[] = [];
  private readonly hooked = new WeakSet<net.Socket>();
  private closed = false;

  /** `refusal`: what waiting connections get when the socket closes (default: the closer's). */
  constructor(
    readonly key: string,
    readonly server: net.Server,
    private readonly refusal?: string,
  ) {
    server.on('connection', (s) => this.take(s));
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
   * A connection a detached listener had taken and gives back unfinished (the control socket's
   * idle connections, read no further): it waits like a new one for the next listener, or is
   * refused if the socket has closed meanwhile.
   */
  giveBack(s: net.Socket): void {
    if (s.destroyed) return;
    if (this.closed) this.refuse(s, '');
    else this.take(s);
  }

  /**
   * Stops listening (the kernel refuses new connections from now on); waiting connections get
   * the refusal line and are closed. Connections a listener took are its own to end.
   */
  close(refusal: string): void {
    if (this.closed) return;
    this.closed = true;
    this.accept = null;
    this.server.close();
    for (const s of this.parked.splice(0)) this.refuse(s, refusal);
  }

  private take(s: net.Socket): void {
    if (this.accept) this.accept(s);
    else this.park(s);
  }

  private refuse(s: net.Socket, refusal: string): void {
    s.on('error', () => {});
    s.setTimeout(10_000, () => s.destroy());
    s.end(this.refusal ?? refusal);
  }

  private park(s: net.Socket): void {
    if (this.parked.length >= PARK_LIMIT) {
      s.on('error', () => {});
      s.destroy();
      return;
    }
    this.parked.push(s);
    // Hooked once per connection: one given back at every reload must not gather listeners.
    if (this.hooked.has(s)) return;
    this.hooked.add(s);
    s.on('error', () => {});
    s.once('close', () => {
      const i = this.parked.indexOf(s);
      if (i >= 0) this.parked.splice(i, 1);
    });
  }
}

/** The listening sockets of a process, by configured host and port or path, kept across reloads. */
export class ListenSockets {
  private readonly sockets = new Map<string, ListenSocket>();

  /** `onError`: told of an error of a bound socket (accept failing), with the socket's key. */
  constructor(private readonly onError: (e: Error, key: string) => void = () => {}) {}

  /**
   * The socket for host:port: one already bound and not attached, or a new one (port 0 named
   * twice gets two sockets, each kept under its own key). `refusal`: what its waiting
   * connections get when it closes, when not the closer's line (the HTTP admin's 503).
   */
  async open(host: string, port: number, refusal?: string): Promise<ListenSocket> {
    let key = tcpKey(host, port);
    for (let i = 1; ; i++) {
      const had = this.sockets.get(key);
      if (had === undefined) break;
      if (!had.attached) return had;
      key = `${tcpKey(host, port)}#${i}`;
    }
    // allowHalfOpen: see SmtpListener (a client that half-closes still gets every reply).
    const server = net.createServer({ noDelay: true, allowHalfOpen: true });
    return this.bind(new ListenSocket(key, server, refusal), (done) => server.listen(port, host, done));
  }

  /** Whether a socket at the UNIX path `path` is kept here (so it is ours, not a stale file). */
  holdsPath(path: string): boolean {
    return this.sockets.has(pathKey(path));
  }

  /**
   * The UNIX socket at `path`: the one kept, or a new one bound there, with `prepare` run just
   * before the bind (clear a stale file) and `bound` right after (its mode). Waiting
   * connections refused at its close get `refusal` (a line of the socket's own protocol).
   */
  async openPath(
    path: string,
    o: { refusal: string; prepare?: () => Promise<void>; bound?: () => void },
  ): Promise<ListenSocket> {
    const key = pathKey(path);
    const had = this.sockets.get(key);
    if (had !== undefined) {
      if (had.attached) throw Object.assign(new Error(`listen EADDRINUSE: ${path}`), { code: 'EADDRINUSE' });
      return had;
    }
    await o.prepare?.();
    const server = net.createServer();
    const sock = await this.bind(new ListenSocket(key, server, o.refusal), (done) =>
      server.listen(path, done),
    );
    try {
      o.bound?.();
    } catch (e) {
      this.sockets.delete(key);
      sock.close('');
      throw e;
    }
    return sock;
  }

  /** Closes every socket no listener is attached to (an address the new configuration dropped). */
  closeUnattached(refusal: string): void {
    this.closeUnattachedWhere(() => true, refusal);
  }

  /**
   * Closes the sockets kept for host:port that no listener is attached to, so that another thread
   * can bind that address; the others (the control socket, waiting for its next server) stay.
   */
  release(host: string, port: number, refusal: string): void {
    const key = tcpKey(host, port);
    this.closeUnattachedWhere((k) => k === key || k.startsWith(`${key}#`), refusal);
  }

  private closeUnattachedWhere(which: (key: string) => boolean, refusal: string): void {
    for (const [key, s] of this.sockets)
      if (!s.attached && which(key)) {
        this.sockets.delete(key);
        s.close(refusal);
      }
  }

  /** Closes them all (the process stops). */
  closeAll(refusal: string): void {
    for (const s of this.sockets.values()) s.close(refusal);
    this.sockets.clear();
  }

  private async bind(sock: ListenSocket, listen: (done: () => void) => void): Promise<ListenSocket> {
    await new Promise<void>((resolve, reject) => {
      sock.server.once('error', reject);
      listen(() => {
        sock.server.off('error', reject);
        resolve();
      });
    });
    sock.server.on('error', (e) => this.onError(e, sock.key));
    this.sockets.set(sock.key, sock);
    return sock;
  }
}

const pathKey = (path: string): string => `unix:${path}`;
/** The key of a TCP socket: the address as configured (port 0 included), so that a reload finds it. */
const tcpKey = (host: string, port: number): string => `${host}|${port}`;
