// The tests' one daemon harness: a whole logmta started from a TOML snippet, either in this
// process (startTestDaemon: startDaemon with a Config, so the test can reach queues, engine and
// listeners, and read every log line) or as a child process running `node bin/logmta.js serve
// --config F` (spawnDaemon: signals, exit codes, crash tests). Both bind 127.0.0.1 port 0 and
// keep their state in a temp dir. Defaults filled into the TOML when it leaves them out:
// hostname "mx.test", data_dir = the temp dir's "data", smtp.listen = ["127.0.0.1:0"],
// odmr.listen = ["127.0.0.1:0"] (never a fixed port, so tests can run side by side); the relay
// preset (startRelayDaemon, relayToml) adds hostname "relay.test", relaying for loopback
// clients and no local domains. Relative paths in the TOML (tls.cert, ...) resolve against the
// temp dir, where `files` are written first.
// Invariant: stop() leaves nothing running and removes the temp dir unless `keepDir`; a spawned
// child whose test forgot it is SIGKILLed when the test process exits.
// Fails: start-up errors reject (ConfigError for a bad TOML; an Error carrying the child's stderr
// when a spawned daemon exits or prints no address within its start timeout).

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Socket } from 'node:net';
import {
  type ConnectionOptions as TlsConnectionOptions,
  connect as tlsConnect,
  type TLSSocket,
} from 'node:tls';
import { parse, stringify } from 'smol-toml';
import { type Config, configFromToml } from '../../src/config/index.js';
import { type Daemon, type DaemonDeps, startDaemon } from '../../src/daemon.js';
import type { Logger } from '../../src/log.js';
import { captureLogger, type LogLine } from './log.js';
import { freeTcpPort } from './ports.js';
import { waitFor } from './wait.js';

/** The repository root (this file runs from dist/test/support/). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The CLI entry point the spawned daemons run. */
export const LOGMTA_BIN = join(REPO_ROOT, 'bin', 'logmta.js');

export interface TestDaemonOptions {
  /** Configuration snippet; the defaults above fill what it leaves out. */
  toml?: string;
  /** Directory for config, data and files; default a fresh mkdtemp (removed by stop()). */
  dir?: string;
  /** Files to write into the dir before loading (name relative to the dir → content). */
  files?: Record<string, string>;
  /** Keep the dir on stop() (for a restart on the same data). Default: keep it iff `dir` was given. */
  keepDir?: boolean;
  /** Where the daemon's log lines go besides `TestDaemon.log` (default: only there). */
  logger?: Logger;
  /** Extra startDaemon dependencies (clock, resolver, ...). */
  deps?: Omit<DaemonDeps, 'logger'>;
  /** Default grace of stop() (ms; default 2 s). */
  stopGraceMs?: number;
}

export interface TestDaemon {
  /** First SMTP listener's port. */
  port: number;
  /** First submission listener's port, if any. */
  submissionPort: number | undefined;
  /** First implicit-TLS submissions listener's port, if any. */
  submissionsPort: number | undefined;
  dir: string;
  dataDir: string;
  config: Config;
  daemon: Daemon;
  /** Every line the daemon logged, in order. */
  log: LogLine[];
  /** Outcome lines ("delivered", "deferred", "failed", "expired"), all or for one recipient. */
  outcomes(rcpt?: string): LogLine[];
  /** Messages still in the queue (all queues). */
  liveMessages(): number;
  /** Nothing queued, and every accepted recipient's final outcome has been logged (outcomes are
   *  logged just after their commit, so an empty queue alone can run ahead of the log). */
  settled(): boolean;
  /** Stops the daemon (graceful, default grace 2 s) and removes the temp dir unless kept. */
  stop(graceMs?: number): Promise<void>;
}

/** Makes a fresh temp dir for a test (caller removes it, or lets a helper's stop() do it). */
export function makeTempDir(prefix = 'logmta-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

type Table = Record<string, unknown>;

function table(parent: Table, key: string): Table {
  const v = parent[key];
  if (v !== undefined && (typeof v !== 'object' || v === null || Array.isArray(v))) return {};
  const t = (v as Table | undefined) ?? {};
  parent[key] = t;
  return t;
}

/**
 * The TOML text a test daemon runs with: `toml` plus the test defaults for what it leaves out.
 * Exported so tests can write the same file for a spawned daemon or inspect it.
 */
export function testToml(toml: string, dataDir: string, o: { sessionThread?: boolean } = {}): string {
  const doc = parse(toml) as Table;
  doc.hostname ??= 'mx.test';
  doc.data_dir ??= dataDir;
  const smtp = table(doc, 'smtp');
  smtp.listen ??= ['127.0.0.1:0'];
  if (o.sessionThread !== undefined) smtp.session_thread ??= o.sessionThread;
  const odmr = table(doc, 'odmr');
  odmr.listen ??= ['127.0.0.1:0'];
  return stringify(doc);
}

function writeFiles(dir: string, files: Record<string, string> | undefined): void {
  for (const [name, content] of Object.entries(files ?? {})) {
    const p = join(dir, name);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content, { mode: 0o600 });
  }
}

const portOf = (hp: string | undefined): number | undefined =>
  hp === undefined ? undefined : Number(hp.slice(hp.lastIndexOf(':') + 1));

const OUTCOMES = new Set(['delivered', 'deferred', 'failed', 'expired']);

/** Starts a logmta daemon in this process on ephemeral loopback ports. */
export async function startTestDaemon(opts: TestDaemonOptions = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? makeTempDir();
  const keep = opts.keepDir ?? opts.dir !== undefined;
  const logger = captureLogger([], opts.logger);
  let daemon: Daemon;
  let config: Config;
  try {
    writeFiles(dir, opts.files);
    // In this process the sessions run on the main thread unless the test asks for the thread:
    // in-process tests look at the daemon's listeners and hooks, and may give it their clock.
    // A spawned `logmta serve` (spawnDaemon) runs the default, the session thread.
    const text = testToml(opts.toml ?? '', join(dir, 'data'), { sessionThread: false });
    config = configFromToml(text, { baseDir: dir, source: 'test config' });
    daemon = await startDaemon(config, { ...opts.deps, logger });
  } catch (e) {
    if (!keep) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const lines = logger.lines;
  const live = (): number => daemon.queues.messageCount();
  let stopped: Promise<void> | undefined;
  return {
    port: portOf(daemon.addresses.smtp[0]) ?? 0,
    submissionPort: portOf(daemon.addresses.submission[0]),
    submissionsPort: portOf(daemon.addresses.submissions[0]),
    dir,
    dataDir: config.dataDir,
    config,
    daemon,
    log: lines,
    outcomes: (rcpt) =>
      lines.filter((l) => OUTCOMES.has(l.msg) && (rcpt === undefined || l.fields.rcpt === rcpt)),
    liveMessages: live,
    settled: () => {
      if (live() > 0) return false;
      let accepted = 0;
      let finals = 0;
      for (const l of lines) {
        if (l.msg === 'received' || l.msg === 'queued') accepted += Number(l.fields.recipients ?? 0);
        else if (l.msg === 'delivered' || l.msg === 'failed') finals++;
      }
      return finals >= accepted;
    },
    stop(graceMs = opts.stopGraceMs ?? 2_000) {
      stopped ??= daemon.stop(graceMs).finally(() => {
        if (!keep) rmSync(dir, { recursive: true, force: true });
      });
      return stopped;
    },
  };
}

/**
 * The relay preset: `toml` plus hostname "relay.test", no local domains (unless it has a
 * [[local]]) and, unless it has its own [smtp] table, relaying for loopback clients — for tests
 * that inject mail and watch where it is delivered.
 */
export function relayToml(toml: string): string {
  const doc = parse(toml) as Table;
  doc.hostname ??= 'relay.test';
  doc.local ??= [];
  if (doc.smtp === undefined) doc.smtp = { relay_networks: ['127.0.0.0/8'] };
  return stringify(doc);
}

/** startTestDaemon with the relay preset (relayToml) and a short stop grace (200 ms). */
export function startRelayDaemon(toml: string, deps: Omit<DaemonDeps, 'logger'> = {}): Promise<TestDaemon> {
  return startTestDaemon({ toml: relayToml(toml), deps, stopGraceMs: 200 });
}

// ------------------------------------------------------------------ child processes

export interface SpawnOptions {
  /** Configuration snippet (test defaults filled in) written to `<dir>/logmta.toml`; omit with `args`. */
  toml?: string;
  /** Run with exactly these arguments after `serve` instead of `--config <dir>/logmta.toml`. */
  args?: string[];
  /** Directory (config, data, files); default a fresh mkdtemp. Also the child's cwd. */
  dir?: string;
  files?: Record<string, string>;
  /** Milliseconds to wait for the "SMTP on" line (default 15 s). */
  startTimeoutMs?: number;
  /** Extra environment. */
  env?: Record<string, string>;
  /** Run the daemon under `ulimit -n` of this many open files (through /bin/sh). */
  ulimitFiles?: number;
  /** Send the daemon's stdout (its log) to this file descriptor instead of keeping it (stdout() is then ""). */
  stdoutFd?: number;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedDaemon {
  child: ChildProcess;
  /** First SMTP port printed by the daemon (0 if it printed none). */
  port: number;
  submissionPort: number | undefined;
  submissionsPort: number | undefined;
  dir: string;
  /** The data directory the daemon printed. */
  dataDir: string;
  configFile: string | undefined;
  /** Everything the child wrote so far (stdout capped at 1 MiB, the tail kept). */
  stdout(): string;
  stderr(): string;
  /** Resolves when the child has exited. */
  exited: Promise<ChildExit>;
  /** Sends a signal (no-op once exited). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit. Does not remove the dir. */
  stop(graceMs?: number): Promise<ChildExit>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

const CAP = 1 << 20;

/** Runs `node bin/logmta.js serve ...` and waits until it prints where it listens. */
export function spawnDaemon(opts: SpawnOptions = {}): Promise<SpawnedDaemon> {
  const dir = opts.dir ?? makeTempDir();
  writeFiles(dir, opts.files);
  let configFile: string | undefined;
  let args: string[];
  if (opts.args !== undefined) {
    args = opts.args;
  } else {
    configFile = join(dir, 'logmta.toml');
    writeFileSync(configFile, testToml(opts.toml ?? '', join(dir, 'data')));
    args = ['--config', configFile];
  }
  const argv = [LOGMTA_BIN, 'serve', ...args];
  const spawnOpts = {
    cwd: dir,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', opts.stdoutFd ?? 'pipe', 'pipe'] as ['ignore', 'pipe' | number, 'pipe'],
  };
  // `exec` keeps the daemon's pid the child's pid (signals and /proc/<pid> reach the daemon).
  const child =
    opts.ulimitFiles === undefined
      ? spawn(process.execPath, argv, spawnOpts)
      : spawn(
          '/bin/sh',
          ['-c', `ulimit -n ${opts.ulimitFiles} && exec "$0" "$@"`, process.execPath, ...argv],
          spawnOpts,
        );
  track(child);
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  // Always drained: a full pipe would block the daemon's logger.
  child.stdout?.on('data', (d: string) => {
    out += d;
    if (out.length > CAP) out = out.slice(-CAP / 2);
  });
  child.stderr?.on('data', (d: string) => {
    err += d;
    if (err.length > CAP) err = err.slice(-CAP / 2);
  });
  const exited = new Promise<ChildExit>((res) => {
    child.once('exit', (code, signal) => res({ code, signal }));
  });
  const kill = (signal: NodeJS.Signals = 'SIGTERM'): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  return new Promise((resolvePromise, reject) => {
    let done = false;
    const finish = (e: Error | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.stderr?.off('data', check);
      if (e !== null) {
        kill('SIGKILL');
        reject(e);
        return;
      }
      const line = /logmta: SMTP on [^\n]*\n/.exec(err)?.[0] ?? '';
      const smtp = /SMTP on (\S+?:\d+)/.exec(line)?.[1];
      const sub = /submission on (\S+?:\d+)/.exec(line)?.[1];
      const subs = /submissions \(TLS\) on (\S+?:\d+)/.exec(line)?.[1];
      const data = /data in (.+)$/.exec(line.trimEnd())?.[1] ?? '';
      resolvePromise({
        child,
        port: portOf(smtp) ?? 0,
        submissionPort: portOf(sub),
        submissionsPort: portOf(subs),
        dir,
        dataDir: data,
        configFile,
        stdout: () => out,
        stderr: () => err,
        exited,
        kill,
        async stop(graceMs = 10_000) {
          kill('SIGTERM');
          const t = setTimeout(() => kill('SIGKILL'), graceMs);
          const r = await exited;
          clearTimeout(t);
          return r;
        },
      });
    };
    const check = (): void => {
      if (/logmta: SMTP on [^\n]*\n/.test(err)) finish(null);
    };
    const timer = setTimeout(
      () => finish(new Error(`logmta serve printed no address within the start timeout; stderr:\n${err}`)),
      opts.startTimeoutMs ?? 15_000,
    );
    child.stderr?.on('data', check);
    exited.then((x) => {
      // Give the stderr pipe a moment to deliver the last bytes before judging.
      setImmediate(() => {
        check();
        finish(
          new Error(
            `logmta serve exited (code ${x.code}, signal ${x.signal}) before listening; stderr:\n${err}`,
          ),
        );
      });
    });
  });
}

/** Runs `node bin/logmta.js ARGS` to completion (for commands that exit, e.g. a bad config). */
export function runLogmta(
  args: string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<ChildExit & { stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [LOGMTA_BIN, ...args], {
    cwd: opts.cwd ?? process.cwd(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 15_000);
  return new Promise((res) => {
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout, stderr });
    });
  });
}

// ------------------------------------------------------------------ external clients

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Tool detection lives in tools.ts (one helper, so tests can hide tools); re-exported here. */
export { hasTool, needTools, toolPath } from './tools.js';

/**
 * Runs an external program asynchronously (never spawnSync: an in-process daemon must keep
 * answering) and collects its output; SIGKILLed after `timeoutMs` (default 20 s).
 */
export function runTool(
  cmd: string,
  args: string[],
  opts: { input?: string | Buffer; timeoutMs?: number; cwd?: string } = {},
): Promise<ToolResult> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(opts.cwd ? { cwd: opts.cwd } : {}) });
  track(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin?.on('error', () => {});
  child.stdin?.end(opts.input ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000);
  return new Promise((res, rej) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      rej(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout, stderr });
    });
  });
}

/** A loopback port nothing listens on (bound and released): a destination that refuses. */
export const closedPort = freeTcpPort;

// ------------------------------------------------------------------ waiting and Maildirs

/** Every file under `dir` with its size (a failed probe must change none of the queue's). */
export function fileSizes(dir: string, out = new Map<string, number>()): Map<string, number> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) fileSizes(p, out);
    else if (st.isFile()) out.set(p, st.size);
  }
  return out;
}

/** The tests' one waitFor (test/support/wait.ts), re-exported for the many tests that import it here. */
export { waitFor } from './wait.js';

/** The messages in a Maildir's new/ (file name order), as text; [] when it does not exist. */
export function maildirMessages(maildir: string): string[] {
  const dir = join(maildir, 'new');
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  return names.map((n) => readFileSync(join(dir, n), 'latin1'));
}

/** Waits until the Maildir's new/ holds at least `n` messages and returns them. */
export async function waitForMaildir(maildir: string, n = 1, timeoutMs = 10_000): Promise<string[]> {
  await waitFor(() => maildirMessages(maildir).length >= n, `${n} message(s) in ${maildir}/new`, timeoutMs);
  return maildirMessages(maildir);
}

// ------------------------------------------------------------------ a raw SMTP conversation

/**
 * A byte-level SMTP client for tests that need to send exactly what they mean (bad input,
 * pipelined bursts, half-sent messages): write raw text, read whole replies in order. It can
 * start TLS on the same connection (STARTTLS) or connect with TLS from the start (port 465).
 */
export class SmtpChat {
  private buf = '';
  private cur = '';
  private readonly replies: string[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  socket: Socket;

  private constructor(socket: Socket) {
    this.socket = socket;
    this.bind(socket);
  }

  private readonly onData = (d: string): void => {
    this.buf += d;
    let i = this.buf.indexOf('\r\n');
    while (i !== -1) {
      const line = this.buf.slice(0, i + 2);
      this.buf = this.buf.slice(i + 2);
      this.cur += line;
      if (line[3] !== '-') {
        this.replies.push(this.cur);
        this.cur = '';
      }
      i = this.buf.indexOf('\r\n');
    }
    this.wake();
  };

  private readonly onClose = (): void => {
    this.closed = true;
    this.wake();
  };

  private bind(socket: Socket): void {
    socket.setEncoding('latin1');
    socket.on('data', this.onData);
    socket.on('error', () => {});
    socket.on('close', this.onClose);
  }

  /**
   * Wraps the connection in TLS (after the server's 220 to STARTTLS); resolves once the
   * handshake is done. Bytes the server sent in plaintext but the test has not read are dropped.
   */
  async startTls(opts: TlsConnectionOptions = {}): Promise<TLSSocket> {
    const plain = this.socket;
    plain.off('data', this.onData);
    plain.off('close', this.onClose);
    this.buf = '';
    this.cur = '';
    const ts = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'localhost', ...opts });
    await new Promise<void>((res, rej) => {
      ts.once('secureConnect', () => {
        ts.off('error', rej);
        res();
      });
      ts.once('error', rej);
    });
    this.socket = ts;
    this.bind(ts);
    return ts;
  }

  /** Connects with TLS from the first byte (implicit TLS, RFC 8314) and reads the greeting. */
  static async openTls(
    port: number,
    opts: TlsConnectionOptions = {},
  ): Promise<{ chat: SmtpChat; greeting: string; tls: TLSSocket }> {
    const ts = tlsConnect({
      port,
      host: '127.0.0.1',
      rejectUnauthorized: false,
      servername: 'localhost',
      ...opts,
    });
    await new Promise<void>((res, rej) => {
      ts.once('secureConnect', () => {
        ts.off('error', rej);
        res();
      });
      ts.once('error', rej);
    });
    const chat = new SmtpChat(ts);
    const [greeting = ''] = await chat.read(1);
    return { chat, greeting, tls: ts };
  }

  /** Connects (from `localAddress` when given, e.g. "127.0.0.2" to be another client). */
  static connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<SmtpChat> {
    return new Promise((res, rej) => {
      const s = connect({ port, host, ...(localAddress ? { localAddress } : {}) }, () => {
        s.off('error', rej);
        res(new SmtpChat(s));
      });
      s.once('error', rej);
    });
  }

  /** Connects and reads the greeting. */
  static async open(port: number): Promise<{ chat: SmtpChat; greeting: string }> {
    const chat = await SmtpChat.connect(port);
    const [greeting = ''] = await chat.read(1);
    return { chat, greeting };
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** The next `n` complete replies (fewer if the connection closes); rejects after timeoutMs. */
  async read(n = 1, timeoutMs = 10_000): Promise<string[]> {
    const end = Date.now() + timeoutMs;
    while (this.replies.length < n && !this.closed) {
      const left = end - Date.now();
      if (left <= 0)
        throw new Error(`timed out waiting for ${n} replies; have ${JSON.stringify(this.replies)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.replies.splice(0, n);
  }

  /** Sends `data` and returns the first line ("250 2.1.0 Ok") of each of the next `n` replies. */
  async ask(data: string | Buffer, n = 1): Promise<string[]> {
    this.send(data);
    return (await this.read(n)).map(firstLine);
  }

  /** Resolves when the server has closed the connection. */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    await waitFor(() => this.closed, 'the server to close the connection', timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The first line of a reply, without CRLF. */
export function firstLine(reply: string): string {
  const i = reply.indexOf('\r\n');
  return i === -1 ? reply : reply.slice(0, i);
}

/** "250 2.1.0" from "250 2.1.0 Ok" (code and enhanced code, when present). */
export function codeOf(reply: string): string {
  const m = /^(\d{3})[ -](\d\.\d{1,3}\.\d{1,3})?/.exec(reply);
  return m ? (m[2] ? `${m[1]} ${m[2]}` : (m[1] as string)) : reply;
}
