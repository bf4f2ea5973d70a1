// What a milter costs on the accept path: the SMTP accept rate of `logmta serve` (one child per
// configuration) with no milter, with one minimal milter that continues at every event (what the
// protocol itself costs: a connection per session, one round trip per event, every header and
// the body sent), the same milter with the no-reply flags (headers, body, RCPT answered without
// waiting), and, when Debian's rspamd is installed, rspamd's proxy really scanning each message.
// Every message goes to an ODMR-held domain: accepted, made durable, never delivered — the cost
// measured is receiving alone. Configurations are measured in alternating rounds (the machine is
// shared: compare figures within one run) and the median per configuration is reported.
// Run: npx tsc -p tsconfig.json && node dist/bench/milter-bench.js [--secs 3] [--rounds 3]
//      [--sessions 8] [--size 4096]

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMFIP } from '../src/milter/protocol.js';
import { type Rspamd, rspamdMissing, startRspamd } from '../test/support/rspamd.js';
import { type BenchDaemon, startBenchDaemon } from './etrn-daemon.js';
import { arg, benchMessage, smtpLoad } from './smtp-load.js';
import { type FakeMilter, startFakeMilter } from '../test/support/fake-milter.js';

const SECS = arg('secs', 3);
const ROUNDS = arg('rounds', 3);
const SESSIONS = arg('sessions', 8);
const SIZE = arg('size', 4096);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'logmta-milter-bench-'));
  const daemons: BenchDaemon[] = [];
  const milters: FakeMilter[] = [];
  let rspamd: Rspamd | undefined;
  try {
    const plain = await startFakeMilter();
    const quiet = await startFakeMilter({
      optneg: { protocol: SMFIP.NR_HDR | SMFIP.NR_BODY | SMFIP.NR_RCPT | SMFIP.NR_EOH },
      on: (c) =>
        c.type === 'header' || c.type === 'body' || c.type === 'rcpt' || c.type === 'eoh' ? [] : undefined,
    });
    milters.push(plain, quiet);
    if (rspamdMissing() === undefined) rspamd = await startRspamd();
    const base = (extra: string) => `
hostname = "mx.bench.test"
local = []
[smtp]
listen = ["127.0.0.1:0"]
max_connections_per_ip = 1000
[odmr]
listen = []
[[odmr.account]]
user = "held"
password = "x"
domains = ["held.test"]
[log]
level = "warn"
${extra}`;
    const milter = (address: string) => `[[milter]]\naddress = "${address}"\ndefault_action = "reject"\n`;
    const configs = [
      { name: 'no milter', toml: base('') },
      { name: 'minimal milter (continue)', toml: base(milter(`inet:127.0.0.1:${plain.address.port}`)) },
      { name: 'minimal milter, no-reply flags', toml: base(milter(`inet:127.0.0.1:${quiet.address.port}`)) },
      ...(rspamd ? [{ name: 'rspamd proxy (scanning)', toml: base(milter(rspamd.address)) }] : []),
    ];
    const ports: number[] = [];
    for (const [i, c] of configs.entries()) {
      const file = join(dir, `c${i}.toml`);
      writeFileSync(file, `data_dir = "${join(dir, `c${i}`)}"\n${c.toml}`);
      const bd = await startBenchDaemon(file, { cwd: dir });
      daemons.push(bd);
      ports.push(bd.smtpPort);
    }
    const data = benchMessage('a@example.org', 'c@held.test', SIZE);
    const rates: number[][] = configs.map(() => []);
    console.log(
      `milter-bench: ${SESSIONS} sessions, ${SIZE}-byte messages, 10 per session, ${SECS} s x ${ROUNDS} rounds`,
    );
    console.log(
      `load average at start: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, c] of configs.entries()) {
        const rate =
          (await smtpLoad({
            port: ports[i] as number,
            sessions: SESSIONS,
            secs: SECS,
            from: 'a@example.org',
            to: 'c@held.test',
            data,
            // Milters cost a connection per SMTP session: reconnect every 10 messages, as real
            // clients send a few messages per session.
            perSession: 10,
          })) / SECS;
        rates[i]?.push(rate);
        console.log(`  round ${round + 1}  ${c.name.padEnd(32)} ${rate.toFixed(0).padStart(6)} msg/s`);
      }
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
    const off = median(rates[0] ?? []);
    console.log('\nmedian accept rate (msg/s), relative to no milter:');
    for (const [i, c] of configs.entries()) {
      const m = median(rates[i] ?? []);
      console.log(
        `  ${c.name.padEnd(32)} ${m.toFixed(0).padStart(6)}  ${((m / off) * 100).toFixed(1).padStart(6)} %`,
      );
    }
    console.log(
      `load average at end: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    for (const m of milters) await m.close();
    await rspamd?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
