// ETRN / ATRN cost versus queue size (issue 5's benchmark). For each queue size N, a fresh data
// directory holds N small messages held for `--others` other domains plus 100 messages for each
// of a few target domains (ETRN domains delivering to a loopback counting sink, and ODMR domains
// of one account); a real `logmta serve` child recovers it; then, per target domain:
//   ETRN: EHLO + `ETRN domain` on the SMTP listener; time from sending ETRN to the 253 reply and
//         to the 100th message arriving at the sink (over the daemon's own outbound connections);
//   ATRN: a hand-written customer on the ODMR listener (EHLO, AUTH CRAM-MD5, `ATRN domain`, then
//         the turnaround: it greets 220 and counts the messages the provider sends); time from
//         sending ATRN to the 250 and to the 100th message received.
// Target: the times at N = 1,000,000 and at N = 10,000 differ by less than 1.5×.
// Usage: node dist/bench/etrn-bench.js [--quick] [--n 10000,1000000] [--others 1000] [--reps 5]
//        [--dir /tmp] [--settle MS] [--starts K] [--keep] [--prof] [--no-sync]
//        [--daemon-flags="--trace-gc"]
// Start-up is reported as wall time and as the daemon's CPU time to ready (from /proc, which a
// loaded machine hardly moves); --starts K starts the daemon K times on the same queue (K − 1
// extra starts, stopped at once) and reports the medians.
// Invariant: every directory and child it makes is removed / ended when it finishes (--keep keeps
// the directories; --prof writes the daemon's .cpuprofile into them).
// Fails: exits 1 with the error when a step fails (a missing message, a wrong reply).

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cramMd5Response } from '../src/smtp/client/auth.js';
import { type BenchDaemon, startBenchDaemon } from './etrn-daemon.js';
import { benchToml, type FillPlan, fillHeld, queueDirOf } from './etrn-fill.js';
import { CountingSink, ReplyReader, freePort, serveSmtp } from './etrn-smtp.js';

const PER_TARGET = 100;
const USER = 'bench';
const PASSWORD = 'bench-secret';

interface Times {
  /** Command sent → its reply (253 / 250), ms. */
  reply: number;
  /** Command sent → the 100th message received, ms. */
  last: number;
}

interface SizeResult {
  n: number;
  fillS: number;
  logBytes: number;
  startMs: number;
  /** CPU time (user + system) the daemon used until it listened. */
  startCpuMs: number;
  /** Each start's wall ms / CPU ms / RSS (with --starts). */
  starts: Array<{ ms: number; cpuMs: number; rss: number }>;
  recoveryMs: number | undefined;
  rss: number;
  hwm: number;
  etrn: Times[];
  atrn: Times[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const fmt = (x: number, d = 0): string =>
  x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const mib = (b: number): string => `${fmt(b / 1048576, 1)} MiB`;

/** Fills in a child process, so the benchmark process (the sink's) keeps a small heap. */
function fillInChild(queueDir: string, plan: FillPlan): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [fileURLToPath(import.meta.url), '--fill-child', queueDir, JSON.stringify(plan)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`fill child exited with ${code}`));
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '') as { ms: number; bytes: number });
      } catch (e) {
        reject(e);
      }
    });
  });
}

async function runEtrn(d: BenchDaemon, sink: CountingSink, domain: string): Promise<Times> {
  const c = await ReplyReader.connect(d.smtpPort);
  try {
    const greet = await c.read();
    if (!greet.startsWith('220')) throw new Error(`greeting: ${greet}`);
    const ehlo = await c.ask('EHLO bench-client.test');
    if (!/^250[ -]ETRN\r$/m.test(ehlo)) throw new Error(`EHLO does not list ETRN: ${ehlo}`);
    const t0 = performance.now();
    const r = await c.ask(`ETRN ${domain}`);
    const reply = performance.now() - t0;
    if (!r.startsWith(`253 2.0.0 OK, ${PER_TARGET} pending messages`)) throw new Error(`ETRN: ${r.trim()}`);
    const last = (await sink.waitFor(domain, PER_TARGET, 300_000)) - t0;
    await c.ask('QUIT').catch(() => '');
    return { reply, last };
  } finally {
    c.socket.destroy();
  }
}

async function runAtrn(odmrPort: number, domain: string): Promise<Times> {
  const c = await ReplyReader.connect(odmrPort);
  try {
    const greet = await c.read();
    if (!greet.startsWith('220')) throw new Error(`ODMR greeting: ${greet}`);
    await c.ask('EHLO customer.bench.test');
    const ch = await c.ask('AUTH CRAM-MD5');
    if (!ch.startsWith('334 ')) throw new Error(`AUTH: ${ch}`);
    const auth = await c.ask(cramMd5Response(USER, PASSWORD, ch.slice(4).trim()));
    if (!auth.startsWith('235')) throw new Error(`AUTH: ${auth}`);
    const t0 = performance.now();
    const r = await c.ask(`ATRN ${domain}`);
    const reply = performance.now() - t0;
    if (!r.startsWith('250')) throw new Error(`ATRN: ${r.trim()}`);
    if (!c.detach()) throw new Error('provider spoke before our 220');
    let count = 0;
    let lastAt = 0;
    const session = serveSmtp(
      c.socket,
      (a) => {
        if (a.recipients.some((x) => x.endsWith(`@${domain}`)) && ++count === PER_TARGET) lastAt = a.at;
      },
      { name: 'customer.bench.test' },
    );
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      session,
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`ATRN: ${count} of ${PER_TARGET} after 300 s`)), 300_000);
      }),
    ]).finally(() => clearTimeout(timer));
    if (count !== PER_TARGET) throw new Error(`ATRN: the provider ended the session after ${count} messages`);
    return { reply, last: lastAt - t0 };
  } finally {
    c.socket.destroy();
  }
}

async function runSize(
  n: number,
  o: {
    parent: string;
    others: number;
    reps: number;
    keep: boolean;
    prof: boolean;
    noSync: boolean;
    settleMs: number;
    starts: number;
    daemonFlags: string[];
  },
  sink: CountingSink,
): Promise<SizeResult> {
  const dir = mkdtempSync(join(o.parent, 'logmta-etrn-bench-'));
  const log = (s: string): void => console.error(`[N=${fmt(n)}] ${s}`);
  try {
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir, { recursive: true });
    const etrnTargets = Array.from({ length: o.reps }, (_, i) => `etrn-t${i + 1}.example`);
    const atrnTargets = Array.from({ length: o.reps }, (_, i) => `atrn-t${i + 1}.example`);
    const odmrPort = await freePort();
    const deadPort = await freePort();
    const configFile = join(dir, 'logmta.toml');
    writeFileSync(
      configFile,
      benchToml({
        dataDir,
        odmrPort,
        sinkPort: sink.port,
        deadPort,
        others: o.others,
        etrnTargets,
        atrnTargets,
        user: USER,
        password: PASSWORD,
      }),
    );
    log(`filling ${fmt(n)} + ${etrnTargets.length + atrnTargets.length} × ${PER_TARGET} messages in ${dir}`);
    const fill = await fillInChild(queueDirOf(dataDir), {
      n,
      others: o.others,
      targets: [...etrnTargets, ...atrnTargets],
      perTarget: PER_TARGET,
      size: 300,
    });
    log(`filled in ${fmt(fill.ms / 1000, 1)} s, ${mib(fill.bytes)}; starting the daemon`);
    const flags = [...(o.prof ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : []), ...o.daemonFlags];
    const start = async (): Promise<BenchDaemon> => {
      const d = await startBenchDaemon(configFile, {
        nodeFlags: flags,
        cwd: dir,
        ...(o.noSync ? { args: ['--unsafe-no-sync'] } : {}),
      });
      const recoveryMs = typeof d.recovery?.ms === 'number' ? d.recovery.ms : undefined;
      log(
        `listening after ${fmt(d.startMs)} ms, ${fmt(d.startCpuMs)} ms of CPU (recovery ${recoveryMs ?? '?'} ms, ${String(d.recovery?.messages ?? '?')} messages), RSS ${mib(d.memory().rss)}`,
      );
      return d;
    };
    const starts: SizeResult['starts'] = [];
    for (let k = 1; k < o.starts; k++) {
      const extra = await start();
      starts.push({ ms: extra.startMs, cpuMs: extra.startCpuMs, rss: extra.memory().rss });
      await extra.stop();
    }
    const d = await start();
    const recoveryMs = typeof d.recovery?.ms === 'number' ? d.recovery.ms : undefined;
    const mem = d.memory();
    starts.push({ ms: d.startMs, cpuMs: d.startCpuMs, rss: mem.rss });
    const etrn: Times[] = [];
    const atrn: Times[] = [];
    let after = mem;
    sink.reset();
    try {
      // Let the start-up settle (the garbage of recovery, the first reclaim) before measuring.
      await sleep(o.settleMs);
      for (const t of etrnTargets) {
        const r = await runEtrn(d, sink, t);
        log(`ETRN ${t}: 253 after ${fmt(r.reply, 1)} ms, 100th delivery after ${fmt(r.last, 1)} ms`);
        etrn.push(r);
        await sleep(500);
      }
      for (const t of atrnTargets) {
        const r = await runAtrn(odmrPort, t);
        log(`ATRN ${t}: 250 after ${fmt(r.reply, 1)} ms, 100th message after ${fmt(r.last, 1)} ms`);
        atrn.push(r);
        await sleep(500);
      }
      after = d.memory();
    } finally {
      await d.stop();
      if (o.keep || o.prof) writeFileSync(join(dir, 'daemon.out'), d.stdout());
    }
    return {
      n,
      fillS: fill.ms / 1000,
      logBytes: fill.bytes,
      startMs: median(starts.map((x) => x.ms)),
      startCpuMs: median(starts.map((x) => x.cpuMs)),
      starts,
      recoveryMs,
      rss: median(starts.map((x) => x.rss)),
      hwm: Math.max(mem.hwm, after.hwm),
      etrn,
      atrn,
    };
  } finally {
    if (!o.keep && !o.prof) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
}

function report(results: SizeResult[], o: { others: number; reps: number }): void {
  const row = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  const list = (ts: Times[], k: keyof Times): string => ts.map((t) => fmt(t[k], 0)).join(' / ');
  console.log(
    `\nETRN / ATRN of a domain holding ${PER_TARGET} messages; other mail spread over ${fmt(o.others)} domains;` +
      ` ${o.reps} target domains of each kind per size (median, then each run)\n`,
  );
  console.log(
    row([
      'N held elsewhere',
      'log size',
      'fill s',
      'daemon start ms',
      'CPU ms to ready',
      'recovery ms',
      'RSS after start',
      'RSS peak (end)',
    ]),
  );
  console.log(row(['---', '---', '---', '---', '---', '---', '---', '---']));
  for (const r of results)
    console.log(
      row([
        fmt(r.n),
        mib(r.logBytes),
        fmt(r.fillS, 1),
        fmt(r.startMs),
        fmt(r.startCpuMs),
        r.recoveryMs === undefined ? '?' : fmt(r.recoveryMs),
        mib(r.rss),
        mib(r.hwm),
      ]),
    );
  for (const r of results)
    if (r.starts.length > 1)
      console.log(
        `starts at N=${fmt(r.n)} (wall ms / CPU ms / RSS): ${r.starts.map((x) => `${fmt(x.ms)} / ${fmt(x.cpuMs)} / ${mib(x.rss)}`).join(', ')}`,
      );
  const first = results[0];
  const last = results.at(-1);
  if (first && last && first !== last) {
    const perMsg = (last.rss - first.rss) / (last.n - first.n);
    console.log(
      `RSS per queued message (N=${fmt(last.n)} against N=${fmt(first.n)}): ${fmt(perMsg)} B${last.n < 1_000_000 ? '' : ` (target < 200 B: ${perMsg < 200 ? 'MET' : 'MISSED'})`}`,
    );
    const ready = last.startMs;
    console.log(
      `ready with N=${fmt(last.n)}: ${fmt(ready)} ms wall, ${fmt(last.startCpuMs)} ms of CPU${last.n < 1_000_000 ? '' : ` (target < 3,000 ms with 1,000,000: ${ready < 3000 ? 'MET' : last.startCpuMs < 3000 ? 'MISSED in wall time, MET in CPU time (a loaded machine)' : 'MISSED'})`}`,
    );
  }
  console.log('');
  console.log(
    row([
      'N held elsewhere',
      'ETRN→253 ms',
      'ETRN→100th delivery ms',
      'runs',
      'ATRN→250 ms',
      'ATRN→100th message ms',
      'runs',
    ]),
  );
  console.log(row(['---', '---', '---', '---', '---', '---', '---']));
  for (const r of results)
    console.log(
      row([
        fmt(r.n),
        fmt(median(r.etrn.map((t) => t.reply)), 1),
        fmt(median(r.etrn.map((t) => t.last)), 1),
        list(r.etrn, 'last'),
        fmt(median(r.atrn.map((t) => t.reply)), 1),
        fmt(median(r.atrn.map((t) => t.last)), 1),
        list(r.atrn, 'last'),
      ]),
    );
  const small = results[0];
  const big = results.at(-1);
  if (small && big && small !== big) {
    const ratio = (f: (r: SizeResult) => number): number => f(big) / f(small);
    const e = ratio((r) => median(r.etrn.map((t) => t.last)));
    const a = ratio((r) => median(r.atrn.map((t) => t.last)));
    const verdict = (x: number): string => (x < 1.5 ? 'MET' : 'MISSED');
    console.log(`\nratio ${fmt(big.n)} / ${fmt(small.n)} (target < 1.5×):`);
    console.log(`  ETRN to last delivery: ${fmt(e, 2)}× ${verdict(e)}`);
    console.log(`  ATRN to last message:  ${fmt(a, 2)}× ${verdict(a)}`);
    if (small.recoveryMs !== undefined && big.recoveryMs !== undefined)
      console.log(`  (daemon recovery: ${fmt(small.recoveryMs)} ms → ${fmt(big.recoveryMs)} ms)`);
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      quick: { type: 'boolean' },
      n: { type: 'string' },
      others: { type: 'string' },
      reps: { type: 'string' },
      dir: { type: 'string' },
      keep: { type: 'boolean' },
      prof: { type: 'boolean' },
      'no-sync': { type: 'boolean' },
      settle: { type: 'string' },
      starts: { type: 'string' },
      'daemon-flags': { type: 'string' },
      'fill-child': { type: 'boolean' },
    },
  });
  if (values['fill-child']) {
    const [queueDir, planJson] = positionals;
    const r = await fillHeld(queueDir!, JSON.parse(planJson!) as FillPlan, (done, total) =>
      console.error(`  fill ${fmt(done)} / ${fmt(total)}`),
    );
    console.log(JSON.stringify(r));
    return;
  }
  const sizes = values.n
    ? values.n.split(',').map((s) => Number(s.replace(/_/g, '')))
    : values.quick
      ? [10_000, 100_000]
      : [10_000, 1_000_000];
  const opts = {
    parent: values.dir ?? '/tmp',
    others: Number(values.others ?? 1000),
    reps: Number(values.reps ?? 5),
    settleMs: Number(values.settle ?? 2000),
    starts: Math.max(1, Number(values.starts ?? 1)),
    daemonFlags: (values['daemon-flags'] ?? '').split(' ').filter((x) => x !== ''),
    keep: values.keep ?? false,
    prof: values.prof ?? false,
    noSync: values['no-sync'] ?? false,
  };
  const sink = await CountingSink.start();
  const results: SizeResult[] = [];
  try {
    for (const n of sizes) results.push(await runSize(n, opts, sink));
  } finally {
    await sink.close();
  }
  report(results, opts);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
