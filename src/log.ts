// Logging: a small Logger interface backed by pino. JSON lines go to stdout through an
// asynchronous sonic-boom destination (writes are batched off the hot path and flushed
// synchronously on process exit); 'pretty' turns each pino line into one human-readable line
// "time LEVEL msg key=value ..." with a formatter of our own.
// Invariant: credentials never reach the output. Fields whose name looks like a secret
// (isSecretKey: password, token, ... at any of the first levels, and in child bindings) are
// replaced by "[redacted]"; SMTP command
// lines must go through redactSmtpCommand() before being logged, and nothing sent during an
// AUTH exchange may be logged verbatim.
// Failure: a destination that cannot be opened throws at createLogger(); EPIPE on stdout
// silently stops logging (pino's behaviour) rather than crashing the daemon.

import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  type DestinationStream,
  type Logger as PinoInstance,
  pino,
  type LoggerOptions as PinoOptions,
} from 'pino';

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

function openDestination(d: LoggerOptions['destination']): DestinationStream {
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
  // sync:false: lines are buffered and written when the fd is ready; pino registers an exit
  // hook that flushes synchronously, so nothing written before exit is lost.
  return pino.destination({ dest: fd, sync: false });
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
    opts.format === 'pretty' ? { write: (line: string) => void out.write(formatPretty(line)) } : out;
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
