// The route table of the HTTP admin listener: other parts (metrics, dashboard) register their
// endpoints here; http.ts only authenticates, matches and writes responses.
//
// How to add an endpoint (e.g. in daemon.ts, after startAdmin):
//
//   daemon.admin.registerRoute('GET', '/metrics', async () => ({
//     headers: { 'content-type': 'text/plain; version=0.0.4' },
//     body: await registry.metrics(),
//   }));
//   daemon.admin.registerRoute('GET', '/dashboard', () => ({ body: html, headers: {...} }), { public: true });
//   daemon.admin.registerRoute('GET', '/api/queue/:id', (req) => ({ body: { id: req.params.id } }));
//
// - A path is matched exactly, segment by segment; a segment ":name" captures into req.params.
// - A body that is a string or Buffer is sent as is (default content-type text/plain); any other
//   value is sent as JSON (application/json).
// - Every route requires `Authorization: Bearer <admin.token>` when a token is configured, unless
//   registered with { public: true } (for pages a browser opens without a header; they must not
//   expose or change queue state by themselves).
// - A handler that throws answers 500 with {"error": message}; an MtaError with code
//   'ADMIN_NOT_FOUND' answers 404 and 'ADMIN_BAD_REQUEST' 400.
// Invariant: one handler per (method, path); registering the same pair twice throws.
import type { IncomingHttpHeaders } from 'node:http';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD';

export interface RouteRequest {
  method: HttpMethod;
  /** Path without the query string, e.g. "/api/queue/0001". */
  path: string;
  /** Captured ":name" segments (URI-decoded). */
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The request body (empty for GET); at most 64 MiB. */
  body: Buffer;
}

export interface RouteResponse {
  /** Default 200. */
  status?: number;
  headers?: Record<string, string>;
  /** string/Buffer: sent as is; anything else: JSON. */
  body?: unknown;
}

export type RouteHandler = (req: RouteRequest) => RouteResponse | Promise<RouteResponse>;

export interface RouteOptions {
  /** Served without the bearer token (static pages only). */
  public?: boolean;
}

/** What other parts of logmta see of the admin listener. */
export interface RouteRegistry {
  registerRoute(method: HttpMethod, path: string, handler: RouteHandler, opts?: RouteOptions): void;
}

interface Entry {
  method: HttpMethod;
  segments: string[];
  handler: RouteHandler;
  public: boolean;
}

export interface RouteMatch {
  handler: RouteHandler;
  params: Record<string, string>;
  public: boolean;
}

function split(path: string): string[] {
  return path.split('/').filter((s) => s.length > 0);
}

export class RouteTable implements RouteRegistry {
  private readonly entries: Entry[] = [];

  registerRoute(method: HttpMethod, path: string, handler: RouteHandler, opts: RouteOptions = {}): void {
    if (!path.startsWith('/')) throw new RangeError(`route path must start with "/": ${path}`);
    const segments = split(path);
    const key = segments.map((s) => (s.startsWith(':') ? ':' : s)).join('/');
    for (const e of this.entries) {
      if (e.method === method && e.segments.map((s) => (s.startsWith(':') ? ':' : s)).join('/') === key)
        throw new RangeError(`route already registered: ${method} ${path}`);
    }
    this.entries.push({ method, segments, handler, public: opts.public === true });
  }

  /** The handler for a request; literal segments win over captures. `allowed` lists other methods. */
  match(method: string, path: string): { found: RouteMatch | undefined; allowed: HttpMethod[] } {
    const parts = split(path);
    let best: { e: Entry; params: Record<string, string>; literal: number } | undefined;
    const allowed: HttpMethod[] = [];
    for (const e of this.entries) {
      if (e.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let literal = 0;
      let ok = true;
      for (let i = 0; i < parts.length && ok; i++) {
        const s = e.segments[i]!;
        const p = parts[i]!;
        if (s.startsWith(':')) {
          try {
            params[s.slice(1)] = decodeURIComponent(p);
          } catch {
            ok = false;
          }
        } else if (s === p) literal++;
        else ok = false;
      }
      if (!ok) continue;
      const m = method === 'HEAD' && e.method === 'GET' ? 'HEAD' : e.method;
      if (m !== method) {
        allowed.push(e.method);
        continue;
      }
      if (!best || literal > best.literal) best = { e, params, literal };
    }
    return {
      found: best ? { handler: best.e.handler, params: best.params, public: best.e.public } : undefined,
      allowed,
    };
  }
}
