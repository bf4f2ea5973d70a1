// Shared helpers for the hostile-input, fault and load tests (test/fuzz, test/security,
// test/faults, test/load): a whole in-process daemon on loopback (the one harness,
// test/support/daemon.ts, with a local domain and a JSON logger kept in a buffer), a raw SMTP client that records every byte the server sends, the RFC reply-code
// set, and detectors for unhandled rejections and heap growth.
// Invariant: everything listens on 127.0.0.1:0 and lives in a temp dir removed by stop().
// Fails: startTestMta rejects with the daemon's start-up error.

import net from 'node:net';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Daemon } from '../../src/daemon.js';
import { createLogger } from '../../src/log.js';
import { startTestDaemon } from '../support/daemon.js';

/** Reply codes RFC 5321, 1869, 1985, 2645, 3030, 3207, 3461, 4954, 6531 and 7504 define. */
export const RFC_CODES = new Set([
  211, 214, 220, 221, 235, 250, 251, 252, 253, 334, 354, 421, 432, 450, 451, 452, 453, 454, 455, 458, 459,
  500, 501, 502, 503, 504, 521, 523, 530, 534, 535, 538, 550, 551, 552, 553, 554, 555, 556,
]);

/** Every problem with a server's output: lines that are not replies, codes outside the RFC set. */
export function replyProblems(out: string): string[] {
  const problems: string[] = [];
  const lines = out.split('\r\n');
  const tail = lines.pop();
  if (tail !== undefined && tail !== '')
    problems.push(`output does not end with CRLF: ${JSON.stringify(tail.slice(0, 80))}`);
  for (const l of lines) {
    if (!/^[2-5]\d\d[ -]/.test(l) && !/^[2-5]\d\d$/.test(l)) {
      problems.push(`not a reply line: ${JSON.stringify(l.slice(0, 120))}`);
      continue;
    }
    const code = Number(l.slice(0, 3));
    if (!RFC_CODES.has(code))
      problems.push(`code ${code} outside the RFC set: ${JSON.stringify(l.slice(0, 120))}`);
    if (l.includes('\n') || l.includes('\r')) problems.push(`bare CR/LF in reply: ${JSON.stringify(l)}`);
  }
  return problems;
}

export interface TestMta {
  daemon: Daemon;
  port: number;
  dir: string;
  /** Every log line the daemon wrote (JSON). */
  logs: string[];
  stop(): Promise<void>;
}

export interface TestMtaOptions {
  /** Extra TOML appended to the base configuration (local domain "localhost"). */
  toml?: string;
  /** Replace the [[local]] table ("" = keep the default one). */
  local?: string;
  level?: 'debug' | 'info';
}

/** A daemon on 127.0.0.1:0 with a temp data dir, local domain `localhost` and a buffer logger. */
export async function startTestMta(o: TestMtaOptions = {}): Promise<TestMta> {
  const logs: string[] = [];
  const logger = createLogger({
    format: 'json',
    level: o.level ?? 'debug',
    destination: { write: (l: string) => logs.push(l) },
  });
  const t = await startTestDaemon({
    toml: ['[smtp]', 'idle_timeout = "5m"', o.toml ?? '', o.local ?? '[[local]]\ndomain = "localhost"'].join(
      '\n',
    ),
    logger,
    stopGraceMs: 200,
  });
  return { daemon: t.daemon, port: t.port, dir: t.dataDir, logs, stop: () => t.stop() };
}

/** A raw client: writes what it is told, records everything the server sends. */
export class RawClient {
  readonly socket: net.Socket;
  out = '';
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.out += d;
      this.wake();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  /** Connects to 127.0.0.1:port, optionally from another loopback address (per-IP limits). */
  static connect(port: number, localAddress?: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(
        localAddress === undefined ? { port, host: '127.0.0.1' } : { port, host: '127.0.0.1', localAddress },
      );
      const c = new RawClient(s);
      s.once('connect', () => resolve(c));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(data: string | Uint8Array): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(data);
  }

  /** Waits until the output matches `re` (or the socket closes, or `ms` pass); returns whether it matched. */
  async waitFor(re: RegExp, ms = 5000): Promise<boolean> {
    const end = Date.now() + ms;
    while (!re.test(this.out)) {
      if (this.closed || Date.now() > end) return re.test(this.out);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, end - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return true;
  }

  /** Sends a command line and waits for a complete final reply after what was there. */
  async command(line: string, ms = 5000): Promise<string> {
    const start = this.out.length;
    this.write(`${line}\r\n`);
    const re = /(^|\r\n)\d{3} [^\r\n]*\r\n$/;
    const end = Date.now() + ms;
    while (!re.test(this.out.slice(start)) && !this.closed && Date.now() < end) await this.waitFor(/$^/, 20);
    return this.out.slice(start);
  }

  /** Waits for the socket to close; false if it did not within `ms`. */
  async waitClosed(ms = 5000): Promise<boolean> {
    await this.waitFor(/$^x/, ms);
    return this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** Records unhandled rejections and uncaught exceptions until stopped. */
export function watchUnhandled(): { errors: unknown[]; stop(): void } {
  const errors: unknown[] = [];
  const onRej = (e: unknown): void => void errors.push(e);
  const onExc = (e: unknown): void => void errors.push(e);
  process.on('unhandledRejection', onRej);
  process.on('uncaughtException', onExc);
  return {
    errors,
    stop() {
      process.off('unhandledRejection', onRej);
      process.off('uncaughtException', onExc);
    },
  };
}

let gcFn: (() => void) | undefined;
/** A full garbage collection (exposes gc at run time; no command-line flag needed). */
export function fullGc(): void {
  if (gcFn === undefined) {
    v8.setFlagsFromString('--expose_gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

/** heapUsed after a full collection, in bytes. */
export function settledHeap(): number {
  fullGc();
  fullGc();
  return process.memoryUsage().heapUsed;
}

export { sleep } from '../support/wait.js';
