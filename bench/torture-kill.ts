// Kill torture: a load generator sends distinct messages over many connections to a logmta
// daemon running as a child process (`bin/logmta.js serve`), which relays them to a counting
// sink on loopback. The daemon is SIGKILLed at random moments and restarted, cycle after cycle;
// finally the generator stops and the run waits until the sink has every message that got a
// 250. Prints acknowledged / delivered / lost / duplicated.
// Invariant checked: lost = 0 (DESIGN.md rule 1: 250 after DATA means durable). Duplicates are
// allowed (rule 5) and counted: a delivery in flight when the daemon died is repeated.
// Usage: node dist/bench/torture-kill.js [--cycles 50] [--connections 50] [--min-ms 300]
//        [--max-ms 1500] [--drain-ms 180000] [--seed N] [--json]
// Exit code: 0 when nothing acknowledged was lost, 1 otherwise.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { SmtpSink } from '../test/support/sink.js';
import { prng } from '../test/support/prng.js';

export interface TortureOptions {
  cycles: number;
  connections: number;
  /** Each kill comes a uniformly random time in [minMs, maxMs] after the daemon is ready. */
  minMs: number;
  maxMs: number;
  /** How long to wait, after the last cycle, for the sink to receive everything acknowledged. */
  drainMs: number;
  seed: number;
  /** Progress lines (one per cycle). */
  log?: (line: string) => void;
}

export interface TortureResult {
  cycles: number;
  connections: number;
  attempted: number;
  acknowledged: number;
  /** Acknowledged messages the sink received (at least once). */
  delivered: number;
  lost: number;
  /** Extra copies the sink received (of any message). */
  duplicated: number;
  /** Messages the sink received whose 250 the generator never saw (the kill cut the reply). */
  deliveredUnacknowledged: number;
  /** Restart to ready (recovery included), milliseconds. */
  restartMsAvg: number;
  restartMsMax: number;
  durationMs: number;
  lostIds: number[];
}

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, '../../bin/logmta.js');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The daemon child: start, wait until it prints its address, SIGKILL. */
export class DaemonProc {
  child: ChildProcess | undefined;
  /** `logFd`: where the daemon's log (stdout) goes; discarded when absent. */
  constructor(
    private readonly configFile: string,
    private readonly logFd?: number,
  ) {}

  async start(): Promise<number> {
    const t0 = Date.now();
    const child = spawn(process.execPath, [BIN, 'serve', '--config', this.configFile], {
      stdio: ['ignore', this.logFd ?? 'ignore', 'pipe'],
    });
    this.child = child;
    let err = '';
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        err += d.toString();
        if (err.includes('SMTP on')) {
          child.stderr?.off('data', onData);
          child.stderr?.resume();
          resolve();
        }
      };
      child.stderr?.on('data', onData);
      child.once('exit', (code, sig) =>
        reject(new Error(`daemon exited during start-up (${code ?? sig}): ${err}`)),
      );
    });
    child.removeAllListeners('exit');
    return Date.now() - t0;
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await exited;
  }
}

/** One generator connection: sends distinct messages until stopped, reconnecting after kills. */
class Generator {
  stopped = false;
  constructor(
    private readonly port: number,
    private readonly next: () => number,
    private readonly acked: Set<number>,
    private readonly attempted: Set<number>,
  ) {}

  async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.session();
      } catch {
        // killed daemon, refused connection: back off a little and reconnect
      }
      if (!this.stopped) await sleep(20 + Math.random() * 80);
    }
  }

  private async session(): Promise<void> {
    const sock = net.connect({ port: this.port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    let buf = '';
    let waiter: ((line: string | null) => void) | null = null;
    let closed = false;
    const lines: string[] = [];
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const l = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (/^\d{3} /.test(l)) {
          if (waiter) {
            const w = waiter;
            waiter = null;
            w(l);
          } else lines.push(l);
        }
      }
    });
    const onEnd = (): void => {
      closed = true;
      if (waiter) {
        const w = waiter;
        waiter = null;
        w(null);
      }
    };
    sock.on('close', onEnd);
    sock.on('error', onEnd);
    const reply = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const l = lines.shift();
        if (l !== undefined) return resolve(l);
        if (closed) return reject(new Error('closed'));
        waiter = (x) => (x === null ? reject(new Error('closed')) : resolve(x));
      });
    const cmd = async (line: string, expect: string): Promise<void> => {
      sock.write(`${line}\r\n`);
      const r = await reply();
      if (!r.startsWith(expect)) throw new Error(`${line}: ${r}`);
    };
    try {
      await reply(); // greeting
      await cmd('EHLO torture.gen', '250');
      while (!this.stopped) {
        const id = this.next();
        await cmd('MAIL FROM:<gen@torture.gen>', '250');
        await cmd(`RCPT TO:<m${id}@sink.test>`, '250');
        await cmd('DATA', '354');
        this.attempted.add(id);
        sock.write(
          `Message-Id: <t${id}@torture.gen>\r\nX-Torture: ${id}\r\nSubject: torture ${id}\r\n\r\n${'payload line\r\n'.repeat(8)}.\r\n`,
        );
        const r = await reply();
        if (r.startsWith('250')) this.acked.add(id);
      }
      sock.write('QUIT\r\n');
    } finally {
      sock.destroy();
    }
  }
}

export async function runTorture(o: TortureOptions): Promise<TortureResult> {
  const log = o.log ?? (() => {});
  const rand = prng(o.seed);
  const t0 = Date.now();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logmta-torture-'));
  const sink = await SmtpSink.start({ pipelining: true });
  const port = await freePort();
  const configFile = path.join(dir, 'logmta.toml');
  writeFileSync(
    configFile,
    [
      'hostname = "torture.test"',
      `data_dir = ${JSON.stringify(path.join(dir, 'data'))}`,
      '[smtp]',
      `listen = ["127.0.0.1:${port}"]`,
      'relay_networks = ["127.0.0.0/8"]',
      `max_connections_per_ip = ${o.connections + 50}`,
      '[queue]',
      'retry = ["1s"]',
      'segment_size = "1MiB"',
      '[[route]]',
      'domain = "sink.test"',
      `host = "127.0.0.1:${sink.port}"`,
      '[log]',
      'level = "warn"',
    ].join('\n'),
  );
  const daemon = new DaemonProc(configFile);
  const acked = new Set<number>();
  const attempted = new Set<number>();
  let nextId = 1;
  const restarts: number[] = [];
  let gens: Generator[] = [];
  let running: Promise<void>[] = [];
  try {
    await daemon.start();
    gens = Array.from({ length: o.connections }, () => new Generator(port, () => nextId++, acked, attempted));
    running = gens.map((g) => g.run());
    for (let cycle = 1; cycle <= o.cycles; cycle++) {
      await sleep(o.minMs + rand() * (o.maxMs - o.minMs));
      await daemon.kill();
      const ms = await daemon.start();
      restarts.push(ms);
      log(
        `cycle ${cycle}/${o.cycles}: killed and restarted in ${ms} ms; acknowledged ${acked.size}, sink has ${sink.transactions.length}`,
      );
    }
    await sleep(o.minMs);
    for (const g of gens) g.stopped = true;
    await Promise.all(running);

    // Everything acknowledged must reach the sink.
    const seen = (): Map<number, number> => {
      const m = new Map<number, number>();
      for (const tx of sink.transactions) {
        const id = Number(/X-Torture: (\d+)/.exec(tx.data.toString('latin1'))?.[1]);
        if (Number.isFinite(id)) m.set(id, (m.get(id) ?? 0) + 1);
      }
      return m;
    };
    const end = Date.now() + o.drainMs;
    let counts = seen();
    while ([...acked].some((id) => !counts.has(id)) && Date.now() < end) {
      await sleep(250);
      counts = seen();
    }
    await sleep(500); // late duplicates
    counts = seen();
    const lostIds = [...acked].filter((id) => !counts.has(id)).sort((a, b) => a - b);
    let duplicated = 0;
    for (const n of counts.values()) duplicated += n - 1;
    return {
      cycles: o.cycles,
      connections: o.connections,
      attempted: attempted.size,
      acknowledged: acked.size,
      delivered: acked.size - lostIds.length,
      lost: lostIds.length,
      duplicated,
      deliveredUnacknowledged: [...counts.keys()].filter((id) => !acked.has(id)).length,
      restartMsAvg: Math.round(restarts.reduce((a, b) => a + b, 0) / Math.max(1, restarts.length)),
      restartMsMax: Math.max(0, ...restarts),
      durationMs: Date.now() - t0,
      lostIds: lostIds.slice(0, 50),
    };
  } finally {
    for (const g of gens) g.stopped = true;
    await daemon.kill();
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cycles: { type: 'string', default: '50' },
      connections: { type: 'string', default: '50' },
      'min-ms': { type: 'string', default: '300' },
      'max-ms': { type: 'string', default: '1500' },
      'drain-ms': { type: 'string', default: '180000' },
      seed: { type: 'string', default: String(Date.now() % 1_000_000) },
      json: { type: 'boolean', default: false },
    },
  });
  const opts: TortureOptions = {
    cycles: Number(values.cycles),
    connections: Number(values.connections),
    minMs: Number(values['min-ms']),
    maxMs: Number(values['max-ms']),
    drainMs: Number(values['drain-ms']),
    seed: Number(values.seed),
    log: (l) => process.stderr.write(`${l}\n`),
  };
  process.stderr.write(`kill torture: ${JSON.stringify({ ...opts, log: undefined })}\n`);
  const r = await runTorture(opts);
  if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else {
    process.stdout.write(
      [
        `cycles ${r.cycles}, connections ${r.connections}, ${Math.round(r.durationMs / 1000)} s, seed ${opts.seed}`,
        `attempted     ${r.attempted}`,
        `acknowledged  ${r.acknowledged}`,
        `delivered     ${r.delivered}`,
        `lost          ${r.lost}${r.lost ? ` (ids ${r.lostIds.join(',')})` : ''}`,
        `duplicated    ${r.duplicated}`,
        `delivered without a 250 seen: ${r.deliveredUnacknowledged}`,
        `restart to ready: avg ${r.restartMsAvg} ms, max ${r.restartMsMax} ms`,
      ].join('\n') + '\n',
    );
  }
  process.exitCode = r.lost === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`torture-kill: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exitCode = 2;
  });
}
