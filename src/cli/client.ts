// How client commands (queue, sendmail) find and talk to the running daemon: they load the same
// configuration `serve` does (--config FILE, --data-dir DIR, or the built-in defaults) and
// connect to its control socket ([admin] socket, default data_dir/admin.sock); --socket PATH
// overrides. Requests are line-delimited JSON (src/admin/protocol.ts).
// Failure: no daemon (ENOENT, ECONNREFUSED) is ADMIN_UNREACHABLE (transient), a socket we may
// not use (EACCES, EPERM) is ADMIN_FORBIDDEN; an error answered by the daemon is rethrown as an
// MtaError with the daemon's code and message. exitCodeFor maps them to sysexits.
// A daemon that is stopped (SIGSTOP) or hung still accepts connections (the kernel's backlog)
// but never answers: while a request waits, the client asks for `status` on a second
// connection every probeMs, and gives up (ADMIN_UNREACHABLE) when that gets no answer within
// probeMs either. A slow action (one waiting up to 30 s per busy message) is not cut short:
// the daemon answers the probe meanwhile. A request given up on may still be carried out if the
// daemon resumes and reads it.
import net from 'node:net';
import { type Config, ConfigError, loadConfig } from '../config/index.js';
import { MtaError } from '../errors.js';
import type { AdminErrorBody, AdminResponse } from '../admin/protocol.js';
import { LineSplitter } from '../admin/protocol.js';

/** parseArgs options every client command accepts. */
export const DAEMON_OPTIONS = {
  config: { type: 'string', short: 'c' },
  'data-dir': { type: 'string' },
  socket: { type: 'string' },
} as const;

export interface DaemonTarget {
  config: Config;
  socket: string;
}

/** Resolves the daemon's configuration and socket path the way `serve` would. Throws ConfigError. */
export function findDaemon(v: {
  config?: string | undefined;
  'data-dir'?: string | undefined;
  socket?: string | undefined;
}): DaemonTarget {
  const overrides: { dataDir?: string } = {};
  if (v['data-dir'] !== undefined) overrides.dataDir = v['data-dir'];
  const config = loadConfig(v.config !== undefined ? { file: v.config, overrides } : { overrides });
  return { config, socket: v.socket ?? config.admin.socket };
}

/** How often a waiting request checks that the daemon still answers, and how long the check may take. */
const PROBE_MS = 5_000;

export class AdminClient {
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: MtaError) => void }
  >();
  private failure: MtaError | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private probing = false;

  private constructor(
    private readonly sock: net.Socket,
    private readonly path: string,
    private readonly probeMs: number,
  ) {
    const lines = new LineSplitter(1024 * 1024 * 1024);
    sock.on('data', (chunk: Buffer) => {
      for (const line of lines.feed(chunk)) {
        let r: AdminResponse;
        try {
          r = JSON.parse(line) as AdminResponse;
        } catch {
          this.fail(new MtaError('ADMIN_PROTOCOL', 'transient', 'daemon sent a line that is not JSON'));
          return;
        }
        const w = this.waiting.get(r.id);
        if (!w) {
          if (!r.ok) this.fail(fromBody(r.error));
          continue;
        }
        this.waiting.delete(r.id);
        if (this.waiting.size === 0) this.stopWatchdog();
        if (r.ok) w.resolve(r.result);
        else w.reject(fromBody(r.error));
      }
    });
    sock.on('error', (e) =>
      this.fail(new MtaError('ADMIN_UNREACHABLE', 'transient', `control socket: ${e.message}`)),
    );
    sock.on('close', () =>
      this.fail(new MtaError('ADMIN_UNREACHABLE', 'transient', 'the daemon closed the control connection')),
    );
  }

  /** `probeMs`: how often a waiting request checks that the daemon still answers (0: never). */
  static connect(path: string, timeoutMs = 10_000, probeMs = PROBE_MS): Promise<AdminClient> {
    return new Promise((resolve, reject) => {
      const sock = net.connect(path);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new MtaError('ADMIN_UNREACHABLE', 'transient', `no answer on ${path}`));
      }, timeoutMs);
      sock.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (e.code === 'EACCES' || e.code === 'EPERM')
          reject(
            new MtaError(
              'ADMIN_FORBIDDEN',
              'permanent',
              `permission denied on ${path} (run as the daemon's user)`,
            ),
          );
        else
          reject(
            new MtaError(
              'ADMIN_UNREACHABLE',
              'transient',
              `cannot reach the daemon at ${path}: ${e.code ?? e.message} (is logmta serve running?)`,
            ),
          );
      });
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new AdminClient(sock, path, probeMs));
      });
    });
  }

  request<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.sock.write(`${JSON.stringify({ id, op, args })}\n`);
      if (this.probeMs > 0) this.watchdog ??= setInterval(() => this.probe(), this.probeMs);
    });
  }

  close(): void {
    this.stopWatchdog();
    this.sock.end();
    this.sock.destroy();
  }

  /** Asks for `status` on a connection of its own; no answer within probeMs fails every request. */
  private probe(): void {
    if (this.probing || this.failure) return;
    this.probing = true;
    let timer: NodeJS.Timeout | undefined;
    const silent = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no answer')), this.probeMs);
    });
    let other: AdminClient | undefined;
    const asked = AdminClient.connect(this.path, this.probeMs, 0).then((c) => {
      other = c;
      return c.request('status');
    });
    Promise.race([asked, silent])
      .then(
        () => {},
        () =>
          this.fail(
            new MtaError(
              'ADMIN_UNREACHABLE',
              'transient',
              `the daemon at ${this.path} accepts connections but does not answer (stopped or hung?); the request may still be carried out if it resumes`,
            ),
          ),
      )
      .finally(() => {
        clearTimeout(timer);
        other?.close();
        this.probing = false;
      });
    asked.catch(() => {});
  }

  private stopWatchdog(): void {
    if (this.watchdog !== undefined) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  private fail(e: MtaError): void {
    if (this.failure) return;
    this.stopWatchdog();
    this.failure = e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
    this.sock.destroy();
  }
}

function fromBody(b: AdminErrorBody): MtaError {
  return new MtaError(
    b.code,
    b.kind === 'transient' ? 'transient' : 'permanent',
    b.message,
    b.smtp ? { smtp: b.smtp } : {},
  );
}

/** Connects to the daemon of `target`, runs `fn`, closes. */
export async function withDaemon<T>(target: DaemonTarget, fn: (c: AdminClient) => Promise<T>): Promise<T> {
  const c = await AdminClient.connect(target.socket);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

/**
 * sysexits(3) for a client failure: 78 configuration, 69 daemon unreachable, 77 permission,
 * 1 for an error the daemon reported (bad id, bad argument...).
 */
export function exitCodeFor(e: unknown): number {
  if (e instanceof ConfigError) return 78;
  if (e instanceof MtaError) {
    if (e.code === 'ADMIN_UNREACHABLE') return 69;
    if (e.code === 'ADMIN_FORBIDDEN') return 77;
    return 1;
  }
  return 70;
}

export function describeError(e: unknown): string {
  if (e instanceof ConfigError) return `invalid configuration:\n  ${e.problems.join('\n  ')}`;
  return e instanceof Error ? e.message : String(e);
}
