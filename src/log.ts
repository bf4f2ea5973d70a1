// Logging: a small Logger interface backed by pino. JSON lines go to stdout (or a file) through a
// buffered, asynchronous sonic-boom destination: lines collect in memory and leave in one write
// of up to 64 KiB once 32 KiB are pending, or every 100 ms, whichever comes first — a handful of
// writes a second instead of one per line, off the hot path. What is buffered is written
// synchronously when the process exits (normal exit, process.exit, an uncaught exception,
// SIGTERM/SIGINT through `logmta serve`); only a SIGKILL, a crash of Node itself or a power loss
// can lose it — at most the last 100 ms / 32 KiB of lines (docs/observability.md).
// 'pretty' turns each pino line into one human-readable line "time LEVEL msg key=value ..."
// with a formatter of our own.
// Invariant: credentials never reach the output. Fields whose name looks like a secret
// (isSecretKey: password, token, ... at any of the first levels, and in child bindings) are
// replaced by "[redacted]"; SMTP command
// lines must go through redactSmtpCommand() before being logged, and nothing sent during an
// AUTH exchange may be logged verbatim.
// Failure: a destination that cannot be opened throws at createLogger(); a write error (EPIPE
// on a closed stdout, EIO, ENOSPC) stops logging rather than crashing the daemon, and one line
// saying so goes to stderr.

import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  type DestinationStream,
  type Logger as PinoInstance,
  pino,
  type LoggerOptions as PinoOptions,
} from 'pino';
import sonicBoom from 'sonic-boom';

// sonic-boom is CommonJS: its class is a property of the module object.
const { SonicBoom } = sonicBoom;
type SonicBoom = InstanceType<typeof SonicBoom>;

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  error(fields: LogFields, msg: string): void;
  warn(fields: LogFields, msg: string): void;
  info(fields: LogFields, msg: string): void;
  debug(fields: LogFields, msg: string): void;
  /** A logger whose every line also carries `bindings` (e.g. { component: 'smtp', session: id }). */
  child(bindings: LogFields): Logger;
  /** Guards costly field building on hot paths: `if (log.isLevelEnabled('debug')) ...`. */
  isLevelEnabled(level: string): boolean;
  /** Pushes buffered lines out (asynchronously); process exit flushes by itself. */
  flush(): void;
}

export interface LoggerOptions {
  format: 'json' | 'pretty';
  level: LogLevel;
  /** Where lines go: 'stdout' (default), 'stderr', a file descriptor, a file path, or any
   * object with write(line) (tests). */
  destination?: 'stdout' | 'stderr' | number | string | { write(line: string): unknown };
}

/**
 * Field names whose values are never written: anything containing password, passwd, secret,
 * token, authorization, credential, api_key/apikey or cookie (any case), and "pass" itself.
 */
const SECRET_KEY = /password|passwd|secret|token|authorization|credential|api_?key|cookie|^pass$/i;

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

const CENSOR = '[redacted]';

function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null || Array.isArray(v);
}

/**
 * Returns `o` itself when it holds no secret (the common case: no allocation), otherwise a
 * copy with secret values censored. Looks into plain objects and arrays, three levels deep.
 * (pino's own `redact` with wildcard paths doubled the cost of every line; this is a key
 * test per field.)
 */
export function redactFields<T extends Record<string, unknown>>(o: T, depth = 0): T {
  let out: Record<string, unknown> = o;
  for (const k in o) {
    const v = o[k];
    let nv: unknown = v;
    if (SECRET_KEY.test(k)) nv = v === undefined ? v : CENSOR;
    else if (depth < 3 && isPlain(v)) nv = redactFields(v, depth + 1);
    if (nv !== v) {
      if (out === o) out = Array.isArray(o) ? ([...o] as unknown as Record<string, unknown>) : { ...o };
      out[k] = nv;
    }
  }
  return out as T;
}

/** Pending bytes that start a write; one write carries at most LOG_MAX_WRITE bytes. */
export const LOG_MIN_WRITE = 32 * 1024;
const LOG_MAX_WRITE = 64 * 1024;
/** Lines never wait longer than this before they are written. */
export const LOG_FLUSH_MS = 100;
/** A destination that stopped draining (a stuck stdout pipe) drops lines beyond this. */
const LOG_MAX_PENDING = 64 * 1024 * 1024;

/** Buffered destinations still open, written out synchronously at exit (one hook per process). */
const openBuffers = new Set<SonicBoom>();
function flushAllAtExit(): void {
  for (const b of openBuffers) {
    try {
      b.flushSync();
    } catch {
      // Nothing to do this late: the fd is gone or the disk refuses.
    }
  }
}

/** A destination with an asynchronous flush (pino's flush() calls it). */
interface FlushableDestination extends DestinationStream {
  flush?(): void;
}

function bufferedFd(fd: number): FlushableDestination {
  // Buffer mode: each line becomes a Buffer once and pending lines are concatenated once per
  // write (the string mode re-measured the growing pending string on every line).
  const boom = new SonicBoom({
    fd,
    sync: false,
    contentMode: 'buffer',
    minLength: LOG_MIN_WRITE,
    maxWrite: LOG_MAX_WRITE,
    maxLength: LOG_MAX_PENDING,
    periodicFlush: LOG_FLUSH_MS,
  });
  if (openBuffers.size === 0) process.on('exit', flushAllAtExit);
  openBuffers.add(boom);
  let failed = false;
  boom.on('error', (e: NodeJS.ErrnoException) => {
    // Logging must never take the daemon down: stop writing, say so once where we still can.
    if (failed) return;
    failed = true;
    openBuffers.delete(boom);
    if (e.code !== 'EPIPE') {
      try {
        process.stderr.write(`logmta: log output failed (${e.code ?? e.message}); logging stopped\n`);
      } catch {
        // stderr is gone too.
      }
    }
  });
  return {
    write(line: string): void {
      // (SonicBoom's typings know only strings; in buffer mode it takes Buffers.)
      if (!failed) boom.write(Buffer.from(line) as unknown as string);
    },
    flush(): void {
      if (!failed) boom.flush();
    },
  };
}

function openDestination(d: LoggerOptions['destination']): FlushableDestination {
  if (typeof d === 'object') return { write: (line: string) => void d.write(line) };
  let fd: number;
  if (d === undefined || d === 'stdout') fd = 1;
  else if (d === 'stderr') fd = 2;
  else if (typeof d === 'number') fd = d;
  else {
    // Opened here, synchronously: an asynchronous open would lose every line logged before a
    // prompt process.exit(), and a bad path should fail at start-up, not later.
    mkdirSync(dirname(d), { recursive: true });
    fd = openSync(d, 'a', 0o640);
  }
  return bufferedFd(fd);
}

/** Creates the process logger. */
export function createLogger(opts: LoggerOptions): Logger {
  const out = openDestination(opts.destination);
  const options: PinoOptions = {
    level: opts.level,
    base: opts.format === 'json' ? { pid: process.pid } : null,
    formatters: {
      level: (label) => ({ level: label }),
      // Runs on every line's fields before serialisation. (Child bindings do not pass
      // through pino's formatters: PinoLogger.child redacts them itself.)
      log: (fields) => redactFields(fields),
    },
  };
  const stream =
    opts.format === 'pretty'
      ? { write: (line: string) => void out.write(formatPretty(line)), flush: () => out.flush?.() }
      : out;
  return new PinoLogger(pino(options, stream));
}

class PinoLogger implements Logger {
  constructor(private readonly p: PinoInstance) {}
  error(fields: LogFields, msg: string): void {
    this.p.error(fields, msg);
  }
  warn(fields: LogFields, msg: string): void {
    this.p.warn(fields, msg);
  }
  info(fields: LogFields, msg: string): void {
    this.p.info(fields, msg);
  }
  debug(fields: LogFields, msg: string): void {
    this.p.debug(fields, msg);
  }
  child(bindings: LogFields): Logger {
    return new PinoLogger(this.p.child(redactFields(bindings)));
  }
  isLevelEnabled(level: string): boolean {
    return this.p.isLevelEnabled(level);
  }
  flush(): void {
    this.p.flush();
  }
}

/** A logger that writes nothing (tests, library use). */
export const nullLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child: () => nullLogger,
  isLevelEnabled: () => false,
  flush() {},
};

const LEVEL_TEXT: Record<string, string> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO ',
  warn: 'WARN ',
  error: 'ERROR',
  fatal: 'FATAL',
};

function formatValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return JSON.stringify(v) ?? String(v);
}

/**
 * Turns one pino JSON line into "2024-05-01T10:00:00.000Z INFO  msg key=value ...\n".
 * An `err` field prints its message inline and its stack indented below. A line that is not
 * JSON passes through unchanged.
 */
export function formatPretty(jsonLine: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return jsonLine.endsWith('\n') ? jsonLine : jsonLine + '\n';
  }
  const { time, level, msg, pid: _pid, hostname: _host, ...rest } = o;
  const when = typeof time === 'number' ? new Date(time).toISOString() : String(time ?? '');
  const lvl = LEVEL_TEXT[String(level)] ?? String(level).toUpperCase();
  let line = `${when} ${lvl} ${typeof msg === 'string' ? msg : ''}`;
  let stack = '';
  for (const [k, v] of Object.entries(rest)) {
    if (k === 'err' && typeof v === 'object' && v !== null) {
      const e = v as { message?: unknown; stack?: unknown; code?: unknown };
      line += ` err=${formatValue(String(e.message ?? ''))}`;
      if (e.code !== undefined) line += ` code=${formatValue(e.code)}`;
      if (typeof e.stack === 'string') {
        stack = e.stack
          .split('\n')
          .slice(1)
          .map((s) => `    ${s.trim()}\n`)
          .join('');
      }
      continue;
    }
    line += ` ${k}=${formatValue(v)}`;
  }
  return `${line}\n${stack}`;
}

/**
 * An SMTP command line safe to log: AUTH keeps only its mechanism ("AUTH PLAIN [redacted]"),
 * since its initial response carries the password. Lines sent inside an AUTH exchange (the
 * base64 answers to 334) are not recognisable here: callers must not log them at all.
 */
export function redactSmtpCommand(line: string): string {
  const m = /^(\s*AUTH\s+\S+)\s+\S/i.exec(line);
  return m ? `${m[1]} ${CENSOR}` : line;
}
