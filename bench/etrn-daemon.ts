// The daemon under test for the ETRN/ATRN benchmark: `node [flags] bin/logmta.js serve --config F`
// as a child process (an honest measurement: its own heap, its own event loop, its RSS), with
// what the benchmark reports — the time to listen, the CPU time it took to get there, the queue
// recovery time the daemon logs, and its memory from /proc.
// Invariant: stdout and stderr are always drained (a full pipe would stall the daemon's logger);
// stop() ends the child (SIGTERM, then SIGKILL) and an exit of the benchmark kills it too.
// Fails: start() rejects with the child's stderr when it exits or does not listen in time.

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/bench/). */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'logmta.js');

export interface BenchDaemon {
  child: ChildProcess;
  smtpPort: number;
  /** Spawn to the "SMTP on" line, ms. */
  startMs: number;
  /**
   * CPU time (user + system, all threads) the daemon had used when it listened, ms; 0 where
   * /proc is not there. Unlike startMs it hardly moves with the machine's load.
   */
  startCpuMs: number;
  /** The "recovered queue" log line (ms, messages, segments, bytes...), if seen. */
  recovery: Record<string, unknown> | undefined;
  /** Current and peak resident set from /proc (bytes; 0 where /proc is not there). */
  memory(): { rss: number; hwm: number };
  stdout(): string;
  stop(): Promise<void>;
}

/** USER_HZ: the unit of /proc/PID/stat's CPU times (100 on Linux, whatever the kernel's HZ). */
const CLOCK_TICKS = 100;

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

export function startBenchDaemon(
  configFile: string,
  o: {
    nodeFlags?: string[];
    args?: string[];
    timeoutMs?: number;
    cwd?: string;
    /** Another build's bin/logmta.js (to compare two builds in one run); default this one's. */
    bin?: string;
  } = {},
): Promise<BenchDaemon> {
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [...(o.nodeFlags ?? []), o.bin ?? BIN, 'serve', '--config', configFile, ...(o.args ?? [])],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(o.cwd ? { cwd: o.cwd } : {}),
    },
  );
  live.add(child);
  let out = '';
  let err = '';
  let recovery: Record<string, unknown> | undefined;
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    if (recovery === undefined && d.includes('recovered queue')) {
      for (const line of (out.slice(-4096) + d).split('\n')) {
        if (!line.includes('"recovered queue"')) continue;
        try {
          recovery = JSON.parse(line) as Record<string, unknown>;
        } catch {
          // a line cut by the chunk boundary: the next chunk completes it
        }
      }
    }
    out += d;
    if (out.length > 1 << 22) out = out.slice(-(1 << 21));
  });
  child.stderr?.on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  void exited.then(() => live.delete(child));
  const memory = (): { rss: number; hwm: number } => {
    try {
      const s = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0) * 1024;
      return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
    } catch {
      return { rss: 0, hwm: 0 };
    }
  };
  const cpuMs = (): number => {
    try {
      // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
      const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8')
        .replace(/^.*\) /, '')
        .split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS;
    } catch {
      return 0;
    }
  };
  return new Promise((res, rej) => {
    const fail = (why: string): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      rej(new Error(`logmta serve ${why}; stderr:\n${err}`));
    };
    const timer = setTimeout(() => fail('did not listen in time'), o.timeoutMs ?? 600_000);
    void exited.then(() => fail('exited before listening'));
    const check = (): void => {
      const m = /logmta: SMTP on 127\.0\.0\.1:(\d+)/.exec(err);
      if (!m) return;
      clearTimeout(timer);
      child.stderr?.off('data', check);
      const startMs = performance.now() - t0;
      const startCpuMs = cpuMs();
      // The recovery line is logged before the listeners open; give stdout a moment to arrive.
      setTimeout(() => {
        res({
          child,
          smtpPort: Number(m[1]),
          startMs,
          startCpuMs,
          get recovery() {
            return recovery;
          },
          memory,
          stdout: () => out,
          async stop() {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill('SIGTERM');
            const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
            await exited;
            clearTimeout(t);
          },
        });
      }, 200);
    };
    child.stderr?.on('data', check);
  });
}
