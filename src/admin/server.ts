// The daemon's control interface, started by daemon.ts: the UNIX control socket (always) and
// the HTTP admin listener (when [admin] listen is set), both running the ops of ops.ts. Other
// parts add HTTP endpoints through registerRoute (routes.ts), before or after start.
// Crash-only: nothing to save; close() only stops listening (a socket file left by a crash is
// removed at the next start).
import { type AdminConfig, formatHostPort } from '../config/index.js';
import type { Logger } from '../log.js';
import { listenError } from '../util/listen-error.js';
import type { ListenSockets } from '../util/listen-sockets.js';
import { AdminHttpServer, registerOpRoutes } from './http.js';
import { type AdminDeps, makeOps, runOp } from './ops.js';
import { type RouteRegistry, RouteTable } from './routes.js';
import { AdminSocketServer, type OpRunner } from './socket.js';

export interface AdminServer extends RouteRegistry {
  /** Path of the control socket. */
  readonly socketPath: string;
  /** "host:port" of the HTTP admin listener, when configured. */
  readonly httpAddress: string | undefined;
  /** Runs an op in-process (what the socket and HTTP do for a request). */
  readonly run: OpRunner;
  /**
   * Stops taking requests; with a kept control socket, those already read are answered within
   * `graceMs` and the clients of the others wait for the next daemon (socket.ts).
   */
  close(graceMs?: number): Promise<void>;
}

export interface StartAdminOptions {
  config: AdminConfig;
  deps: AdminDeps;
  logger: Logger;
  /** Largest message the injector takes; sizes the socket's line limit. */
  maxMessageSize: number;
  /** Listening sockets kept across reloads (`logmta serve`): the control socket is one of them. */
  sockets?: ListenSockets;
}

export async function startAdmin(opts: StartAdminOptions): Promise<AdminServer> {
  const ops = makeOps(opts.deps);
  const run: OpRunner = (op, args) => runOp(ops, op, args, opts.deps.extra);
  const routes = new RouteTable();
  registerOpRoutes(routes, run);
  const sock = await AdminSocketServer.listen({
    path: opts.config.socket,
    run,
    logger: opts.logger,
    // base64 grows 4/3, plus the JSON around it.
    maxLine: Math.ceil((opts.maxMessageSize * 4) / 3) + 1024 * 1024,
    ...(opts.sockets ? { sockets: opts.sockets } : {}),
  });
  let web: AdminHttpServer | undefined;
  try {
    const hp = opts.config.listen;
    if (hp) {
      web = await AdminHttpServer.listen({
        host: hp.host,
        port: hp.port,
        token: opts.config.token,
        routes,
        logger: opts.logger,
        ...(opts.sockets ? { sockets: opts.sockets } : {}),
      }).catch((e: unknown) => {
        throw listenError(e, formatHostPort(hp), 'admin.listen');
      });
    }
  } catch (e) {
    await sock.close();
    throw e;
  }
  opts.logger.info({ socket: sock.path, http: web?.address }, 'admin interface listening');
  return {
    socketPath: sock.path,
    httpAddress: web?.address,
    run,
    registerRoute: (method, path, handler, o) => routes.registerRoute(method, path, handler, o),
    async close(graceMs = 0) {
      await Promise.all([sock.close(graceMs), web?.close()]);
    },
  };
}
