// Long run (outside CI): the daemon as a child process under a steady load for a long time,
// relaying to a sink that fails 10% of transactions at end of data (451, so they are retried).
// Every interval it samples the backlog (acknowledged minus delivered), the daemon's RSS, and
// the queue's disk usage and segment count; at the end it checks that these stayed flat (the
// last quarter's average is within a bound of the second quarter's) and that no acknowledged
// message was lost once the load stops.
// Usage: node dist/test/long/steady-load.js [--minutes 30] [--rate 100] [--connections 10]
//        [--interval-s 30] [--fail 0.1]
// Exit code: 0 when flat and nothing lost, 1 otherwise.

import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { spawnDaemon } from '../support/daemon.js';
import { freeTcpPort } from '../support/ports.js';
import { SmtpSink } from '../support/sink.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function du(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  const walk = (d: string): void => {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      return;
    }
    for (const n of names) {
      const p = path.join(d, n);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else {
        bytes += st.size;
        files++;
      }
    }
  };
  walk(dir);
  return { bytes, files };
}

function rssOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Sends one message per tick on a persistent connection; returns acknowledged ids via `acked`. */
async function sender(
  port: number,
  next: () => number,
  acked: Set<number>,
  perSecond: number,
  until: () => boolean,
): Promise<void> {
  const sock = net.connect({ port, host: '127.0.0.1' });
  sock.setEncoding('latin1');
  let buf = '';
  const queue: Array<(l: string) => void> = [];
  sock.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (/^\d{3} /.test(l)) queue.shift()?.(l);
    }
  });
  const reply = (): Promise<string> => new Promise((r) => queue.push(r));
  const say = (l: string): Promise<string> => {
    const p = reply();
    sock.write(`${l}\r\n`);
    return p;
  };
  await reply();
  await say('EHLO steady.gen');
  const gap = 1000 / perSecond;
  let due = Date.now();
  while (!until()) {
    const id = next();
    await say('MAIL FROM:<gen@steady.gen>');
    await say(`RCPT TO:<m${id}@sink.test>`);
    await say('DATA');
    const r = await say(`X-Steady: ${id}\r\nSubject: steady ${id}\r\n\r\n${'payload line\r\n'.repeat(20)}.`);
    if (r.startsWith('250')) acked.add(id);
    due += gap;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
  }
  await say('QUIT');
  sock.destroy();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '30' },
      rate: { type: 'string', default: '100' },
      connections: { type: 'string', default: '10' },
      'interval-s': { type: 'string', default: '30' },
      fail: { type: 'string', default: '0.1' },
      /** Keep the data dir and write the daemon's info-level log there (for post-mortems). */
      keep: { type: 'boolean', default: false },
    },
  });
  const minutes = Number(values.minutes);
  const rate = Number(values.rate);
  const conns = Number(values.connections);
  const failRate = Number(values.fail);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logmta-steady-'));
  let failed = 0;
  const sink = await SmtpSink.start({
    pipelining: true,
    dataReply: () => {
      if (Math.random() < failRate) {
        failed++;
        return '451 4.3.0 scripted failure';
      }
      return undefined;
    },
  });
  const port = await freeTcpPort();
  const queueDir = path.join(dir, 'data', 'queue');
  const daemon = await spawnDaemon({
    dir,
    toml: [
      'hostname = "steady.test"',
      '[smtp]',
      `listen = ["127.0.0.1:${port}"]`,
      'relay_networks = ["127.0.0.0/8"]',
      '[queue]',
      'retry = ["10s", "30s", "1m"]',
      'segment_size = "4MiB"',
      '[[route]]',
      'domain = "sink.test"',
      `host = "127.0.0.1:${sink.port}"`,
      '[log]',
      `level = "${values.keep ? 'info' : 'warn'}"`,
    ].join('\n'),
    ...(values.keep ? { stdoutFd: openSync(path.join(dir, 'daemon.log'), 'a') } : {}),
  });
  const acked = new Set<number>();
  let nextId = 1;
  const end = Date.now() + minutes * 60_000;
  const senders = Array.from({ length: conns }, () =>
    sender(
      port,
      () => nextId++,
      acked,
      rate / conns,
      () => Date.now() >= end,
    ),
  );
  const delivered = (): Set<number> => {
    const s = new Set<number>();
    for (const tx of sink.transactions) {
      const id = Number(/X-Steady: (\d+)/.exec(tx.data.toString('latin1'))?.[1]);
      if (Number.isFinite(id)) s.add(id);
    }
    return s;
  };
  const samples: Array<{ t: number; backlog: number; rss: number; disk: number; segments: number }> = [];
  process.stdout.write('minute  acked  delivered  backlog  sink-failures  rss(MiB)  queue(MiB)  files\n');
  while (Date.now() < end) {
    await sleep(Number(values['interval-s']) * 1000);
    const d = delivered();
    const q = du(queueDir);
    const s = {
      t: (Date.now() - (end - minutes * 60_000)) / 60_000,
      backlog: acked.size - [...acked].filter((id) => d.has(id)).length,
      rss: rssOf(daemon.child.pid),
      disk: q.bytes,
      segments: q.files,
    };
    samples.push(s);
    process.stdout.write(
      `${s.t.toFixed(1).padStart(6)}  ${String(acked.size).padStart(6)}  ${String(d.size).padStart(9)}  ${String(s.backlog).padStart(7)}  ${String(failed).padStart(13)}  ${(s.rss / 1048576).toFixed(1).padStart(8)}  ${(s.disk / 1048576).toFixed(1).padStart(10)}  ${String(s.segments).padStart(5)}\n`,
    );
  }
  await Promise.all(senders);
  // Drain: retries are at most 1 minute apart.
  const drainEnd = Date.now() + 5 * 60_000;
  let d = delivered();
  while ([...acked].some((id) => !d.has(id)) && Date.now() < drainEnd) {
    await sleep(1000);
    d = delivered();
  }
  const lostIds = [...acked].filter((id) => !d.has(id));
  const lost = lostIds.length;
  if (lost > 0) process.stdout.write(`lost ids: ${lostIds.slice(0, 50).join(',')}\n`);
  const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const q = Math.floor(samples.length / 4);
  const second = samples.slice(q, 2 * q);
  const last = samples.slice(3 * q);
  const flat = (k: 'backlog' | 'rss' | 'disk', slack: number, floor: number): boolean =>
    avg(last.map((s) => s[k])) <= avg(second.map((s) => s[k])) * slack + floor;
  const ok = {
    nothingLost: lost === 0,
    backlogFlat: flat('backlog', 1.5, rate * 10),
    rssFlat: flat('rss', 1.3, 32 * 1048576),
    diskFlat: flat('disk', 1.5, 16 * 1048576),
  };
  const finalDisk = du(queueDir);
  process.stdout.write(
    `${JSON.stringify({ minutes, rate, acknowledged: acked.size, delivered: d.size, lost, sinkFailures: failed, finalQueueBytes: finalDisk.bytes, finalQueueFiles: finalDisk.files, ...ok })}\n`,
  );
  daemon.kill('SIGKILL');
  await daemon.exited;
  await sink.close();
  if (values.keep) process.stdout.write(`kept ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
  process.exitCode = Object.values(ok).every(Boolean) ? 0 : 1;
}

main().catch((e) => {
  process.stderr.write(`steady-load: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 2;
});
