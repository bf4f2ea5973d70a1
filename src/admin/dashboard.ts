// The dashboard: a static page (src/admin/dashboard/: HTML, CSS, plain JS, no build step) plus
// Chart.js served from node_modules, and the JSON it polls. Routes on the HTTP admin listener:
//   GET /dashboard, /dashboard/{dashboard.js,dashboard.css,chart.umd.js}   public static files
//   GET /api/stats          live figures (token required when one is configured)
//   GET /api/message/:id    one queued message, as `logmta queue show --json` prints it
// The page keeps the history itself (polls every few seconds); the daemon keeps none.
// Invariant: the public routes serve only these fixed files (no path from the request reaches
// the file system); every queue fact goes through a token-checked route.
// Failure: missing static files throw at registration (a broken install shows at start-up).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MtaError } from '../errors.js';
import { parseId, type Queues } from '../queue/index.js';
import type { DestinationStats, Metrics, Totals } from './metrics.js';
import type { DaemonSnapshot } from './metrics-snapshot.js';
import type { RouteRegistry } from './routes.js';

export interface DashboardDeps {
  metrics: Metrics;
  queues: Queues;
  /** Facts shown in the header (host name, listeners, start time). */
  info?: () => Record<string, unknown>;
  /** The cluster as this node sees it ([cluster]); absent on a single node. */
  cluster?: () => Record<string, unknown>;
}

export interface StatsBody extends DaemonSnapshot {
  totals: Totals;
  /** Most attempts first (at most 15). */
  busiest: DestinationStats[];
  /** Most recent failures first, only destinations with failures (at most 15). */
  failing: DestinationStats[];
  info: Record<string, unknown>;
  /** Nodes, homes and Redis as this node sees them (a cluster only). */
  cluster?: Record<string, unknown>;
}

const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
};

/** The folder holding the page: beside this file in the source tree (dist/ holds no copies). */
export function dashboardDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const dir of [join(here, 'dashboard'), join(here, '..', '..', '..', 'src', 'admin', 'dashboard')]) {
    try {
      readFileSync(join(dir, 'index.html'));
      return dir;
    } catch {
      // try the next candidate
    }
  }
  throw new MtaError('DASHBOARD_MISSING', 'permanent', `dashboard files not found near ${here}`);
}

function chartJsPath(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('chart.js')), 'chart.umd.js');
}

/** The /api/stats body. */
export function statsBody(deps: DashboardDeps): StatsBody {
  const dests = deps.metrics.destinations();
  return {
    ...deps.metrics.snapshot(),
    totals: { ...deps.metrics.totals },
    busiest: [...dests].sort((a, b) => b.attempts - a.attempts).slice(0, 15),
    failing: dests
      .filter((d) => d.failed + d.deferred > 0)
      .sort((a, b) => (b.lastErrorAt ?? 0) - (a.lastErrorAt ?? 0))
      .slice(0, 15),
    info: deps.info?.() ?? {},
    ...(deps.cluster ? { cluster: deps.cluster() } : {}),
  };
}

export function registerDashboard(routes: RouteRegistry, deps: DashboardDeps): void {
  const dir = dashboardDir();
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const [name, type] of Object.entries(FILES))
    files.set(name, { body: readFileSync(join(dir, name)), type });
  files.set('chart.umd.js', { body: readFileSync(chartJsPath()), type: 'text/javascript; charset=utf-8' });

  const serve = (name: string) => () => {
    const f = files.get(name)!;
    return { headers: { 'content-type': f.type, 'cache-control': 'no-cache' }, body: f.body };
  };
  routes.registerRoute('GET', '/dashboard', serve('index.html'), { public: true });
  for (const name of files.keys()) {
    if (name !== 'index.html')
      routes.registerRoute('GET', `/dashboard/${name}`, serve(name), { public: true });
  }
  routes.registerRoute('GET', '/api/stats', () => ({
    headers: { 'cache-control': 'no-store' },
    body: statsBody(deps),
  }));
  routes.registerRoute('GET', '/api/message/:id', async (req) => {
    const id = req.params.id ?? '';
    const msgId = parseId(id);
    if (msgId === undefined) throw new MtaError('ADMIN_BAD_REQUEST', 'permanent', `not a queue id: ${id}`);
    const view = await deps.queues.describe(msgId);
    if (!view) throw new MtaError('ADMIN_NOT_FOUND', 'permanent', `${id} is not in the queue`);
    return { headers: { 'cache-control': 'no-store' }, body: view };
  });
}
