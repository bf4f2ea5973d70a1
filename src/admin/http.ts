// The HTTP admin listener (config [admin] listen, loopback unless allow_remote): serves the
// routes of a RouteTable (routes.ts) — the queue operations registered by registerOpRoutes()
// below, and whatever metrics/dashboard register.
// Access: when admin.token is set every non-public route needs "Authorization: Bearer <token>"
// (compared in constant time). Against cross-site requests from a browser on the same host,
// a request carrying an Origin other than our own is refused (403), and a POST must be
// application/json (which a page cannot send cross-origin without a preflight we never allow).
// Failure: bad JSON/arguments → 400, unknown id → 404, anything else a handler throws → 500;
// bodies over 64 MiB → 413.
// Reloads: under `logmta serve` the port is a kept socket (util/listen-sockets.ts), so a scrape
// that connects while the daemon restarts in place waits for the next daemon's answer instead of
// being refused; closing lets requests in progress finish (up to CLOSE_GRACE_MS) and ends idle
// keep-alive connections.
import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ListenSocket, ListenSockets } from '../util/listen-sockets.js';
import { MtaError } from '../errors.js';
import type { Logger } from '../log.js';
import { parseDuration } from '../config/index.js';
import { badRequest, ERR_BAD_REQUEST, ERR_NOT_FOUND, ERR_UNKNOWN_OP, errorBody } from './protocol.js';
import type { HttpMethod, RouteRequest, RouteResponse, RouteTable } from './routes.js';
import type { OpRunner } from './socket.js';
import { secretDigest } from '../util/secret-equal.js';

const MAX_BODY = 64 * 1024 * 1024;
/** How long close() lets requests in progress finish before it cuts their connections. */
const CLOSE_GRACE_MS = 2_000;
/** What a connection still waiting for a daemon gets when the kept socket itself closes. */
const HTTP_REFUSAL = 'HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n';
const METHODS: ReadonlySet<string> = new Set(['GET', 'POST', 'PUT', 'DELETE', 'HEAD']);

export interface AdminHttpOptions {
  host: string;
  port: number;
  token: string | undefined;
  routes: RouteTable;
  logger: Logger;
  /** `logmta serve`'s kept sockets: the port is taken from there and outlives this server. */
  sockets?: ListenSockets;
}

function statusOf(e: unknown): number {
  if (e instanceof MtaError) {
    if (e.code === ERR_NOT_FOUND) return 404;
    if (e.code === ERR_BAD_REQUEST || e.code === ERR_UNKNOWN_OP) return 400;
    if (e.code === 'ADMIN_BODY_TOO_LARGE') return 413;
  }
  return 500;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) {
        reject(new MtaError('ADMIN_BODY_TOO_LARGE', 'permanent', 'request body too large'));
        req.destroy();
        return;
      }
      parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

export class AdminHttpServer {
  private constructor(
    private readonly server: http.Server,
    /** "host:port" actually bound. */
    readonly address: string,
    private readonly inFlight: InFlight,
    private readonly shared?: ListenSocket,
  ) {}

  static async listen(opts: AdminHttpOptions): Promise<AdminHttpServer> {
    const want = opts.token === undefined ? undefined : secretDigest(opts.token);
    let self: AdminHttpServer | undefined;
    const inFlight: InFlight = { requests: 0, closing: false, drained: undefined };
    const server = http.createServer((req, res) => {
      inFlight.requests++;
      // Closing: the answer ends its connection, so that no keep-alive outlives the server.
      if (inFlight.closing) res.shouldKeepAlive = false;
      res.once('close', () => {
        if (--inFlight.requests === 0) inFlight.drained?.();
      });
      void handle(req, res).catch((e) => {
        opts.logger.error({ err: e instanceof Error ? e.message : String(e) }, 'admin http error');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    server.requestTimeout = 60_000;
    server.headersTimeout = 10_000;

    const send = (res: http.ServerResponse, out: RouteResponse, head: boolean) => {
      const headers: Record<string, string> = { 'cache-control': 'no-store', ...out.headers };
      let body: Buffer;
      if (typeof out.body === 'string' || Buffer.isBuffer(out.body)) {
        body = Buffer.isBuffer(out.body) ? out.body : Buffer.from(out.body);
        headers['content-type'] ??= 'text/plain; charset=utf-8';
      } else {
        body = Buffer.from(`${JSON.stringify(out.body ?? null)}\n`);
        headers['content-type'] ??= 'application/json';
      }
      headers['content-length'] = String(body.length);
      res.writeHead(out.status ?? 200, headers);
      res.end(head ? undefined : body);
    };

    async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
      const url = new URL(req.url ?? '/', 'http://admin');
      const method = req.method ?? 'GET';
      const head = method === 'HEAD';
      const origin = req.headers.origin;
      if (origin !== undefined && self && origin !== `http://${self.address}`) {
        send(
          res,
          { status: 403, body: { error: { code: 'ADMIN_FORBIDDEN', message: 'cross-origin request' } } },
          head,
        );
        return;
      }
      const { found, allowed } = METHODS.has(method)
        ? opts.routes.match(method, url.pathname)
        : { found: undefined, allowed: [] };
      if (!found) {
        if (allowed.length > 0)
          send(
            res,
            {
              status: 405,
              headers: { allow: allowed.join(', ') },
              body: { error: { code: 'ADMIN_METHOD', message: 'method not allowed' } },
            },
            head,
          );
        else
          send(
            res,
            { status: 404, body: { error: { code: ERR_NOT_FOUND, message: 'no such endpoint' } } },
            head,
          );
        return;
      }
      if (want && !found.public) {
        const auth = req.headers.authorization ?? '';
        const m = /^Bearer\s+(.+)$/i.exec(auth);
        if (!m || !timingSafeEqual(secretDigest(m[1]!.trim()), want)) {
          send(
            res,
            {
              status: 401,
              headers: { 'www-authenticate': 'Bearer realm="logmta"' },
              body: { error: { code: 'ADMIN_UNAUTHORIZED', message: 'bearer token required' } },
            },
            head,
          );
          return;
        }
      }
      if (method === 'POST' && !/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
        send(
          res,
          {
            status: 415,
            body: {
              error: { code: 'ADMIN_CONTENT_TYPE', message: 'POST needs content-type application/json' },
            },
          },
          head,
        );
        return;
      }
      let out: RouteResponse;
      try {
        const rr: RouteRequest = {
          method: method as HttpMethod,
          path: url.pathname,
          params: found.params,
          query: url.searchParams,
          headers: req.headers,
          body: method === 'GET' || head ? Buffer.alloc(0) : await readBody(req),
        };
        out = await found.handler(rr);
      } catch (e) {
        out = { status: statusOf(e), body: { error: errorBody(e) } };
      }
      send(res, out, head);
    }

    let shared: ListenSocket | undefined;
    let a: AddressInfo;
    if (opts.sockets) {
      shared = await opts.sockets.open(opts.host, opts.port, HTTP_REFUSAL);
      a = shared.address;
    } else {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port, opts.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      a = server.address() as AddressInfo;
    }
    const address = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
    self = new AdminHttpServer(server, address, inFlight, shared);
    // The connections of the kept socket are this server's from now on (first those that waited).
    shared?.attach((c) => server.emit('connection', c));
    return self;
  }

  async close(): Promise<void> {
    // New connections wait on a kept socket for the next server (or, not kept, are refused by
    // the kernel); requests in progress finish, within the grace; then every connection ends.
    this.shared?.detach();
    this.inFlight.closing = true;
    // Two turns of the loop, so that a request already sent on a connection just accepted is
    // read (and so in flight) before idle connections are ended (http's close() ends them).
    for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    if (this.inFlight.requests > 0) {
      await new Promise<void>((resolve) => {
        const cut = setTimeout(resolve, CLOSE_GRACE_MS);
        cut.unref();
        this.inFlight.drained = () => {
          clearTimeout(cut);
          resolve();
        };
      });
    }
    this.server.closeAllConnections();
    await closed;
  }
}

/** Requests being answered, and who waits for there to be none. */
interface InFlight {
  requests: number;
  /** close() has begun. */
  closing: boolean;
  drained: (() => void) | undefined;
}

function jsonBody(body: Buffer): Record<string, unknown> {
  if (body.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw badRequest('body is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badRequest('body must be a JSON object');
  return v as Record<string, unknown>;
}

/** Query parameters of GET /api/queue and /api/queue-summary as op args. */
function filterArgs(q: URLSearchParams): Record<string, unknown> {
  const a: Record<string, unknown> = {};
  for (const k of ['lane', 'domain', 'sender'] as const) {
    const v = q.get(k);
    if (v !== null) a[k] = v;
  }
  const older = q.get('older_than');
  if (older !== null) {
    try {
      a.olderThanMs = parseDuration(older);
    } catch {
      throw badRequest(`older_than: not a duration: ${older}`);
    }
  }
  const limit = q.get('limit');
  if (limit !== null) a.limit = Number(limit);
  return a;
}

/**
 * The control operations over HTTP:
 *   POST /api/op/:op                     any op, args as the JSON body (same as the socket)
 *   GET  /api/status
 *   GET  /api/queue?lane=&domain=&sender=&older_than=1h&limit=
 *   GET  /api/queue-summary?...          (qshape)
 *   GET  /api/queue/:id[?data=1]
 *   POST /api/queue/:id/:action          hold | release | delete | bounce | flush
 */
export function registerOpRoutes(routes: RouteTable, run: OpRunner): void {
  routes.registerRoute('POST', '/api/op/:op', async (r) => ({
    body: await run(r.params.op!, jsonBody(r.body)),
  }));
  routes.registerRoute('GET', '/api/status', async () => ({ body: await run('status', {}) }));
  routes.registerRoute('GET', '/api/queue', async (r) => ({ body: await run('list', filterArgs(r.query)) }));
  routes.registerRoute('GET', '/api/queue-summary', async (r) => ({
    body: await run('summary', filterArgs(r.query)),
  }));
  routes.registerRoute('GET', '/api/queue/:id', async (r) => ({
    body: await run('show', { id: r.params.id, data: r.query.get('data') === '1' }),
  }));
  routes.registerRoute('POST', '/api/queue/:id/:action', async (r) => {
    const action = r.params.action!;
    if (!['hold', 'release', 'delete', 'bounce', 'flush'].includes(action))
      throw badRequest(`unknown action "${action}"`);
    return { body: await run(action, { ids: [r.params.id] }) };
  });
}
