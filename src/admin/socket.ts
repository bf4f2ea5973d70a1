// The control socket: a UNIX socket under the data dir speaking protocol.ts (one JSON request
// per line, one response per line, in order). Access control is the file system's: the socket
// is chmod 0600 right after bind and lives in the 0700 data dir, so only its owner (and root)
// can connect — connect(2) on a UNIX socket needs write permission on the socket file. Node
// exposes no SO_PEERCRED, so there is no per-connection uid check on top (docs/operations.md).
// Start-up: a stale socket left by a crash is removed; a live one (another daemon answers) is
// an error, as is a path that is not a socket (never delete an operator's file). Under `logmta
// serve` the socket is kept across reloads (util/listen-sockets.ts): a request made during the
// restart waits and is answered by the new daemon, one under way is answered by the old one.
// Failure: a broken request gets an error response; an over-long line ends the connection.
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { MtaError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ListenSocket, ListenSockets } from '../util/listen-sockets.js';
import { type AdminResponse, encodeResponse, errorBody, LineSplitter, parseRequest } from './protocol.js';

export type OpRunner = (op: string, args: Record<string, unknown>) => Promise<unknown>;

export interface AdminSocketOptions {
  path: string;
  run: OpRunner;
  logger: Logger;
  /** Longest request line (an injected message travels base64 in one line). */
  maxLine: number;
}

/** Whether something accepts a connection on the UNIX socket at `path` (a daemon's control socket). */
export function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Removes a stale socket at `path`; throws ADMIN_SOCKET_IN_USE if a daemon answers there, or
 * ADMIN_SOCKET_PATH if it is not a socket. daemon.ts calls it before opening the queue, so a
 * second `serve` on the same data dir stops before recovery could touch a live queue. A socket
 * `kept` holds (this process's own, across a reload) is left alone.
 */
export async function clearStale(path: string, kept?: ListenSockets): Promise<void> {
  if (kept?.holdsPath(path)) return;
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket())
    throw new MtaError(
      'ADMIN_SOCKET_PATH',
      'permanent',
      `${path} exists and is not a socket; not removing it`,
    );
  if (await probe(path))
    throw new MtaError(
      'ADMIN_SOCKET_IN_USE',
      'permanent',
      `another logmta answers on ${path}; is it already running?`,
    );
  unlinkSync(path);
}

/** What a client waiting on a kept socket gets when it closes: the daemon stops (exit 69 / 75). */
const STOPPING = encodeResponse({
  id: 0,
  ok: false,
  error: { code: 'ADMIN_UNREACHABLE', kind: 'transient', message: 'the daemon is stopping' },
});

/** One connection being served: its requests in order, and how to stop reading it. */
interface Served {
  /** The requests read so far, answered in turn. */
  chain: Promise<void>;
  lines: LineSplitter;
  onData: (chunk: Buffer) => void;
  onClose: () => void;
}

export class AdminSocketServer {
  private readonly conns = new Map<net.Socket, Served>();

  private constructor(
    readonly path: string,
    private readonly server: net.Server | undefined,
    private readonly shared: ListenSocket | undefined,
  ) {}

  /**
   * Listens on `opts.path`. With `sockets` (`logmta serve`), on a socket of that set, kept when
   * this server closes: requests made while no server is attached wait for the next one.
   */
  static async listen(opts: AdminSocketOptions & { sockets?: ListenSockets }): Promise<AdminSocketServer> {
    const prepare = async (): Promise<void> => {
      mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
      await clearStale(opts.path);
    };
    // Before anyone can use it: owner read/write only. (Until this line the mode comes from the
    // umask; sockets need write permission to connect, and the 0700 data dir covers the gap.)
    const secure = (): void => chmodSync(opts.path, 0o600);
    if (opts.sockets) {
      const shared = await opts.sockets.openPath(opts.path, { refusal: STOPPING, prepare, bound: secure });
      const self = new AdminSocketServer(opts.path, undefined, shared);
      shared.attach((sock) => self.serve(sock, opts));
      return self;
    }
    await prepare();
    const server = net.createServer();
    const self = new AdminSocketServer(opts.path, server, undefined);
    server.on('connection', (sock) => self.serve(sock, opts));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    secure();
    server.on('error', (e) => opts.logger.error({ err: e.message }, 'admin socket error'));
    return self;
  }

  private serve(sock: net.Socket, opts: AdminSocketOptions): void {
    const served: Served = {
      chain: Promise.resolve(),
      lines: new LineSplitter(opts.maxLine),
      onData: (chunk: Buffer) => {
        let got: string[];
        try {
          got = served.lines.feed(chunk);
        } catch (e) {
          sock.end(encodeResponse({ id: 0, ok: false, error: errorBody(e) }));
          sock.destroy();
          return;
        }
        for (const line of got) {
          if (line.trim() === '') continue;
          // Requests run one after another so responses keep request order.
          served.chain = served.chain.then(async () => {
            let res: AdminResponse;
            let id = 0;
            try {
              const req = parseRequest(line);
              id = req.id;
              res = { id, ok: true, result: (await opts.run(req.op, req.args ?? {})) ?? null };
            } catch (e) {
              res = { id, ok: false, error: errorBody(e) };
            }
            if (!sock.destroyed) sock.write(encodeResponse(res));
          });
        }
      },
      onClose: () => this.conns.delete(sock),
    };
    this.conns.set(sock, served);
    sock.on('close', served.onClose);
    // (Once per connection: one handed on from server to server keeps the first.)
    if (sock.listenerCount('error') === 0) sock.on('error', () => {});
    sock.on('data', served.onData);
    // A connection an earlier server gave back was paused there (see close).
    sock.resume();
  }

  /**
   * Stops taking requests. Own socket: stops listening, drops connections and removes the
   * socket file. Kept socket (a reload): requests already read are answered (for up to
   * `graceMs`, then their connections are dropped), and each connection then goes back to the
   * socket, its unread bytes with it, for the next server to answer — the client only waits.
   */
  async close(graceMs = 0): Promise<void> {
    if (!this.shared) {
      const closed = new Promise<void>((resolve) => this.server?.close(() => resolve()));
      for (const c of this.conns.keys()) c.destroy();
      await closed;
      try {
        if (lstatSync(this.path).isSocket()) unlinkSync(this.path);
      } catch {
        // already gone
      }
      return;
    }
    const shared = this.shared;
    shared.detach();
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), graceMs);
    });
    await Promise.all(
      [...this.conns].map(async ([sock, served]) => {
        // Read no further: what comes next is the next server's.
        sock.pause();
        sock.off('data', served.onData);
        if ((await Promise.race([served.chain, graceOver])) === 'late') {
          sock.destroy();
          return;
        }
        sock.off('close', served.onClose);
        this.conns.delete(sock);
        const rest = served.lines.takeRest();
        if (rest.length > 0) sock.unshift(rest);
        shared.giveBack(sock);
      }),
    );
    clearTimeout(timer);
  }
}
