// The kill torture, shared by the bounded CI test (test/faults/kill-torture.test.ts) and the
// long run (bench/torture-kill.ts): a load generator sends distinct messages over many
// connections to a `logmta serve` child (test/support/daemon.ts spawnDaemon), which relays
// them to a counting sink on loopback. The daemon is SIGKILLed at random moments and restarted
// on the same data, cycle after cycle; finally the generator stops and the run waits until the
// sink has every message that got a 250.
// Invariant checked by the callers: lost = 0 (DESIGN.md rule 1: 250 after DATA means durable).
// Duplicates are allowed (rule 5) and counted: a delivery in flight when the daemon died is
// repeated. Every figure about deliveries is counted from what the sink received.
// Fails: rejects when the daemon does not start (with its stderr).

import net from 'node:net';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { AdminClient } from '../../src/cli/client.js';
import { makeTempDir, type SpawnedDaemon, spawnDaemon } from './daemon.js';
import { freeTcpPort } from './ports.js';
import { prng } from './prng.js';
import { SmtpSink } from './sink.js';
import { sleep, waitFor } from './wait.js';

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
  /** Distinct messages the sink received (acknowledged or not), counted from the sink. */
  delivered: number;
  /** Acknowledged messages the sink never received. */
  lost: number;
  /** Extra copies the sink received (of any message). */
  duplicated: number;
  /** Messages the sink received whose 250 the generator never saw (the kill cut the reply). */
  deliveredUnacknowledged: number;
  /** Messages the sink received that the generator never sent (must be 0: nothing is invented). */
  deliveredUnsent: number;
  /** Restart to ready (recovery included), milliseconds. */
  restartMsAvg: number;
  restartMsMax: number;
  durationMs: number;
  lostIds: number[];
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

/** Whether the running daemon's queue holds nothing (asked over its control socket). */
async function queueEmpty(dataDir: string): Promise<boolean> {
  const c = await AdminClient.connect(join(dataDir, 'admin.sock'));
  try {
    const { lanes } = await c.request<{ lanes: Record<string, number> }>('status', {});
    return Object.values(lanes).every((n) => n === 0);
  } finally {
    c.close();
  }
}

export async function runTorture(o: TortureOptions): Promise<TortureResult> {
  const log = o.log ?? (() => {});
  const rand = prng(o.seed);
  const t0 = Date.now();
  const dir = makeTempDir('logmta-torture-');
  const sink = await SmtpSink.start({ pipelining: true });
  const port = await freeTcpPort();
  const toml = [
    'hostname = "torture.test"',
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
  ].join('\n');
  let daemon: SpawnedDaemon | undefined;
  const start = async (): Promise<number> => {
    const t = Date.now();
    daemon = await spawnDaemon({ toml, dir });
    return Date.now() - t;
  };
  const kill = async (): Promise<void> => {
    if (!daemon) return;
    daemon.kill('SIGKILL');
    await daemon.exited;
  };
  const acked = new Set<number>();
  const attempted = new Set<number>();
  let nextId = 1;
  const restarts: number[] = [];
  let gens: Generator[] = [];
  let running: Promise<void>[] = [];
  try {
    await start();
    gens = Array.from({ length: o.connections }, () => new Generator(port, () => nextId++, acked, attempted));
    running = gens.map((g) => g.run());
    for (let cycle = 1; cycle <= o.cycles; cycle++) {
      await sleep(o.minMs + rand() * (o.maxMs - o.minMs));
      await kill();
      const ms = await start();
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
    await waitFor(
      () => {
        const counts = seen();
        return [...acked].every((id) => counts.has(id));
      },
      'every acknowledged message at the sink',
      o.drainMs,
    ).catch(() => {}); // what is missing then is reported as lost
    // Late duplicates: a delivery the daemon had in flight when the run ended. Once the queue is
    // empty nothing more can arrive, so wait for that rather than for a while.
    await waitFor(() => queueEmpty(join(dir, 'data')), 'the queue to empty', o.drainMs).catch(() => {});
    const counts = seen();
    const lostIds = [...acked].filter((id) => !counts.has(id)).sort((a, b) => a - b);
    let duplicated = 0;
    for (const n of counts.values()) duplicated += n - 1;
    return {
      cycles: o.cycles,
      connections: o.connections,
      attempted: attempted.size,
      acknowledged: acked.size,
      delivered: counts.size,
      lost: lostIds.length,
      duplicated,
      deliveredUnacknowledged: [...counts.keys()].filter((id) => !acked.has(id)).length,
      deliveredUnsent: [...counts.keys()].filter((id) => !attempted.has(id)).length,
      restartMsAvg: Math.round(restarts.reduce((a, b) => a + b, 0) / Math.max(1, restarts.length)),
      restartMsMax: Math.max(0, ...restarts),
      durationMs: Date.now() - t0,
      lostIds: lostIds.slice(0, 50),
    };
  } finally {
    for (const g of gens) g.stopped = true;
    await kill();
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
