// What [cluster] costs one node: the relay rate of `logmta serve` (client → logmta → sink, every
// message routed on at once) without [cluster], with [cluster] on a local redis-server (heartbeats,
// homes, the shared ETRN/AUTH limits — nothing on the relay path itself), and with the shared
// outbound limits on as well (a GCRA cell booked in Redis per message, a connection lease per
// new connection). Also the Redis commands each configuration sent per relayed message (from the
// server's own count, INFO stats), heartbeats included. Configurations alternate in rounds (the
// machine is shared: compare figures within one run); medians are reported.
// Run: npx tsc -p tsconfig.json && node dist/bench/cluster-bench.js [--secs 3] [--rounds 3]
//      [--sessions 8] [--size 4096]

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { RedisServer, redisMissing } from '../test/support/redis.js';
import { SmtpSink } from '../test/support/sink.js';
import { type BenchDaemon, startBenchDaemon } from './etrn-daemon.js';
import { arg, benchMessage, smtpLoad } from './smtp-load.js';

const SECS = arg('secs', 3);
const ROUNDS = arg('rounds', 3);
const SESSIONS = arg('sessions', 8);
const SIZE = arg('size', 4096);

async function commands(r: Redis): Promise<number> {
  const info = await r.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? 0);
}

async function main(): Promise<void> {
  const missing = redisMissing();
  if (missing) {
    console.log(`cluster-bench: ${missing}`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'logmta-cluster-bench-'));
  const daemons: BenchDaemon[] = [];
  const redis = await RedisServer.start();
  const probe = new Redis(redis.url);
  const sink = await SmtpSink.start({ pipelining: true });
  try {
    writeFileSync(join(dir, 'cluster.key'), 'bench-cluster-secret-0123456789\n');
    const base = (extra: string) => `
hostname = "mx.bench.test"
local = []
[smtp]
listen = ["127.0.0.1:0"]
max_connections_per_ip = 1000
relay_domains = ["relay.test"]
[odmr]
listen = []
[[route]]
domain = "relay.test"
host = "127.0.0.1:${sink.port}"
[log]
level = "warn"
${extra}`;
    const cluster = (node: string, more = '') =>
      `[cluster]\nnode = "${node}"\nredis = "${redis.url}"\nsecret_file = "${join(dir, 'cluster.key')}"\nprefix = "${node}:"\n${more}`;
    const configs = [
      { name: 'no [cluster]', toml: base('') },
      { name: '[cluster] (membership, homes)', toml: base(cluster('n1')) },
      {
        name: '[cluster] + shared outbound limits',
        toml: base(
          cluster('n2', 'message_rate_per_destination = "1000000/s"\nconnections_per_destination = 1000\n'),
        ),
      },
    ];
    const ports: number[] = [];
    for (const [i, c] of configs.entries()) {
      const file = join(dir, `c${i}.toml`);
      writeFileSync(file, `data_dir = "${join(dir, `c${i}`)}"\n${c.toml}`);
      const bd = await startBenchDaemon(file, { cwd: dir });
      daemons.push(bd);
      ports.push(bd.smtpPort);
    }
    const data = benchMessage('a@example.org', 'c@relay.test', SIZE, false);
    const rates: number[][] = configs.map(() => []);
    const perMsg: number[][] = configs.map(() => []);
    console.log(
      `cluster-bench: ${SESSIONS} sessions, ${SIZE}-byte messages relayed to a sink, ${SECS} s x ${ROUNDS} rounds`,
    );
    console.log(
      `load average at start: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, c] of configs.entries()) {
        const before = sink.transactions.length;
        const cmd0 = await commands(probe);
        const t0 = performance.now();
        const accepted = await smtpLoad({
          port: ports[i] as number,
          sessions: SESSIONS,
          secs: SECS,
          from: 'a@example.org',
          to: 'c@relay.test',
          data,
          perSession: 10,
        });
        // Relay rate: until the sink has every message this round accepted.
        while (sink.transactions.length < before + accepted) await new Promise((r) => setTimeout(r, 5));
        const secs = (performance.now() - t0) / 1000;
        const cmds = (await commands(probe)) - cmd0 - 1; // our own INFO excluded
        const rate = accepted / secs;
        rates[i]?.push(rate);
        perMsg[i]?.push(cmds / accepted);
        console.log(
          `  round ${round + 1}  ${c.name.padEnd(36)} ${rate.toFixed(0).padStart(6)} msg/s relayed` +
            `  ${(cmds / accepted).toFixed(2).padStart(6)} Redis commands/msg (${cmds} in ${secs.toFixed(1)} s)`,
        );
        sink.transactions.length = 0;
      }
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
    const off = median(rates[0] ?? []);
    console.log('\nmedian relay rate (msg/s), relative to no [cluster]; Redis commands per message:');
    for (const [i, c] of configs.entries()) {
      const m = median(rates[i] ?? []);
      console.log(
        `  ${c.name.padEnd(36)} ${m.toFixed(0).padStart(6)}  ${((m / off) * 100).toFixed(1).padStart(6)} %  ` +
          `${median(perMsg[i] ?? []).toFixed(2)} cmd/msg`,
      );
    }
    console.log(
      `load average at end: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    probe.disconnect();
    await sink.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
