// Start-up recovery progress: a one-line bar redrawn in place on a terminal, periodic log lines
// otherwise (a service manager's journal should not fill with carriage returns). Fed by
// Queues.open's onProgress(done, total) (bytes scanned of one queue directory; it restarts at 0
// for the next directory). The summary of each directory is logged by daemon.ts
// ('recovered queue'); finish() only clears the bar and prints the overall figures.
// Invariant: never writes a bar to a stream that is not a TTY; redraws at most every 100 ms.
// Failure: none: a write error on the terminal is ignored (progress is cosmetic).
import type { Logger } from '../log.js';

export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

export interface ProgressOptions {
  log: Logger;
  /** Where the bar goes when it is a TTY (default process.stderr). */
  stream?: ProgressStream;
  now?: () => number;
  /** Minimum time between log lines when not on a terminal (default 5 s). */
  logEveryMs?: number;
  /** Queues smaller than this show no bar and no periodic lines (default 64 MiB). */
  minBytes?: number;
}

export interface RecoveryProgress {
  onProgress(done: number, total: number): void;
  /** Clears the bar and, when progress was shown, prints/logs the totals. */
  finish(): void;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/** One bar line, fitted to `width` columns: "recovering queue 2/3 [#####.....]  48% 1.2/2.5 GiB  ETA 12s". */
export function renderBar(
  p: { done: number; total: number; dir: number; elapsedMs: number },
  width: number,
): string {
  const frac = p.total > 0 ? Math.min(1, p.done / p.total) : 1;
  const pct = `${Math.floor(frac * 100)}`.padStart(3);
  const rate = p.elapsedMs > 0 ? p.done / (p.elapsedMs / 1000) : 0;
  const eta = rate > 0 && frac < 1 ? ` ETA ${Math.ceil((p.total - p.done) / rate)}s` : '';
  const head = `recovering queue ${p.dir} `;
  const tail = ` ${pct}% ${formatBytes(p.done)}/${formatBytes(p.total)}${eta}`;
  const barWidth = Math.max(10, Math.min(40, width - head.length - tail.length - 3));
  const filled = Math.round(frac * barWidth);
  return `${head}[${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)}]${tail}`;
}

export function recoveryProgress(opts: ProgressOptions): RecoveryProgress {
  const stream = opts.stream ?? process.stderr;
  const now = opts.now ?? Date.now;
  const tty = stream.isTTY === true;
  const logEvery = opts.logEveryMs ?? 5_000;
  const minBytes = opts.minBytes ?? 64 * 1024 * 1024;
  const t0 = now();
  let dirStart = t0;
  let dir = 1;
  let lastDone = -1;
  let lastTotal = -1;
  let lastDraw = Number.NEGATIVE_INFINITY;
  let lastLog = t0; // the first line only after logEveryMs: a quick recovery logs nothing
  let shown = false;
  let bytes = 0;

  const write = (s: string): void => {
    try {
      stream.write(s);
    } catch {
      // cosmetic only
    }
  };

  return {
    onProgress(done, total) {
      const t = now();
      if (done < lastDone || (total !== lastTotal && lastTotal >= 0 && lastDone >= lastTotal)) {
        // A new queue directory started (its scan restarts at 0).
        bytes += lastTotal;
        dir++;
        dirStart = t;
      }
      lastDone = done;
      lastTotal = total;
      if (total < minBytes) return;
      const finished = done >= total;
      if (tty) {
        if (!finished && t - lastDraw < 100) return;
        lastDraw = t;
        shown = true;
        const line = renderBar({ done, total, dir, elapsedMs: t - dirStart }, stream.columns ?? 80);
        write(`\r${line}\x1b[K`);
      } else if (t - lastLog >= logEvery || (finished && shown)) {
        lastLog = t;
        shown = true;
        opts.log.info(
          { queue: dir, done, total, percent: Math.floor((done / total) * 100) },
          'recovery progress',
        );
      }
    },
    finish() {
      if (!shown) return;
      const total = bytes + Math.max(0, lastTotal);
      const ms = now() - t0;
      if (tty) write(`\r\x1b[Krecovered ${formatBytes(total)} in ${(ms / 1000).toFixed(1)}s\n`);
      else opts.log.info({ bytes: total, ms }, 'recovery finished');
    },
  };
}
