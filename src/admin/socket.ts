// The control socket: a UNIX socket under the data dir speaking protocol.ts (one JSON request
// per line, one response per line, in order). Access control is the file system's: the socket
// is chmod 0600 right after bind and lives in the 0700 data dir, so only its owner (and root)
// can connect — connect(2) on a UNIX socket needs write permission on the socket file. Node
// exposes no SO_PEERCRED, so there is no per-connection uid check on top (docs/operations.md).
// Start-up: a stale socket left by a crash is removed; a live one (another daemon answers) is
// an error, as is a path that is not a socket (never delete an operator's file).
// Failure: a broken request gets an error response; an over-long line ends the connection.
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { MtaError } from '../errors.js';
import type { Logger } from '../log.js';
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
 * second `serve` on the same data dir stops before recovery could touch a live queue.
 */
export async function clearStale(path: string): Promise<void> {
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

export class AdminSocketServer {
  private readonly conns = new Set<net.Socket>();

  private constructor(
    readonly path: string,
    private readonly server: net.Server,
  ) {}

  static async listen(opts: AdminSocketOptions): Promise<AdminSocketServer> {
    mkdirSync(dirname(opts.path), { recursive: true, mode: 0o700 });
    await clearStale(opts.path);
    const server = net.createServer();
    const self = new AdminSocketServer(opts.path, server);
    server.on('connection', (sock) => self.serve(sock, opts));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Before anyone can use it: owner read/write only. (Until this line the mode comes from the
    // umask; sockets need write permission to connect, and the 0700 data dir covers the gap.)
    chmodSync(opts.path, 0o600);
    server.on('error', (e) => opts.logger.error({ err: e.message }, 'admin socket error'));
    return self;
  }

  private serve(sock: net.Socket, opts: AdminSocketOptions): void {
    this.conns.add(sock);
    sock.on('close', () => this.conns.delete(sock));
    sock.on('error', () => {});
    const lines = new LineSplitter(opts.maxLine);
    // Requests run one after another so responses keep request order.
    let chain = Promise.resolve();
    sock.on('data', (chunk: Buffer) => {
      let got: string[];
      try {
        got = lines.feed(chunk);
      } catch (e) {
        sock.end(encodeResponse({ id: 0, ok: false, error: errorBody(e) }));
        sock.destroy();
        return;
      }
      for (const line of got) {
        if (line.trim() === '') continue;
        chain = chain.then(async () => {
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
    });
  }

  /** Stops listening, drops connections and removes the socket file. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.conns) c.destroy();
    await closed;
    try {
      if (lstatSync(this.path).isSocket()) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}
