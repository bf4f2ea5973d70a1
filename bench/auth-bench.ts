// What DKIM signing and the SPF/DKIM/DMARC checks cost on the accept path: the SMTP accept rate
// of `logmta serve` (one child process per configuration) with nothing on, with DKIM signing
// (RSA-2048, Ed25519) of mail from relay_networks, and with the incoming checks on for mail from
// outside against a local DNS server (unbound on loopback, with the SPF, DKIM and DMARC records
// of the sending domain; the message carries a valid RSA-2048 signature, so each one costs an
// RSA verification and three TXT lookups, cached by logmta's resolver after the first).
// Every message goes to an ODMR-held domain: accepted, made durable, never delivered — the cost
// measured is receiving alone. Configurations are measured in alternating rounds (the machine is
// shared: compare figures within one run) and the median per configuration is reported.
// "All off" on this build against "all off" on a build from before these stages existed shows
// what they cost when disabled: --baseline DIR names that other build (a tree with bin/ and a
// compiled dist/, e.g. `git archive <commit> | tar -x -C DIR`, then tsc there).
// Run: npx tsc -p tsconfig.json && node dist/bench/auth-bench.js [--secs 4] [--rounds 3]
//      [--sessions 8] [--size 4096] [--baseline DIR]... [--only-off]

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPrivateKey } from 'node:crypto';
import { dkimSignatures } from '../src/auth/dkim-sign.js';
import { splitMessage } from '../src/auth/message.js';
import { ed25519Key, rsaKey } from '../test/support/dkim-tools.js';
import { hasUnbound, startDnsServer, type TestDnsServer, txt } from '../test/support/dns-server.js';
import { type BenchDaemon, startBenchDaemon } from './etrn-daemon.js';
import { arg, benchMessage, smtpLoad } from './smtp-load.js';

const SECS = arg('secs', 4);
const ROUNDS = arg('rounds', 3);
const SESSIONS = arg('sessions', 8);
const SIZE = arg('size', 4096);

/** CPU seconds (user + system) the process has used, from /proc (0 where there is none). */
function cpuSeconds(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return 0;
  }
}

interface Config {
  name: string;
  toml: string;
  bin?: string;
  localAddress: string;
  from: string;
  data: Buffer;
}

async function main(): Promise<void> {
  if (!hasUnbound()) throw new Error('unbound is not installed (apt-get install unbound)');
  const dir = mkdtempSync(join(tmpdir(), 'logmta-auth-bench-'));
  let dns: TestDnsServer | undefined;
  const daemons: BenchDaemon[] = [];
  try {
    const rsa = rsaKey(2048);
    const ed = ed25519Key();
    const sender = rsaKey(2048);
    writeFileSync(join(dir, 'rsa.pem'), rsa.pem);
    writeFileSync(join(dir, 'ed.pem'), ed.pem);
    dns = await startDnsServer({
      zones: ['sender.test'],
      records: [
        txt('sender.test', 'v=spf1 ip4:127.0.0.2 -all'),
        txt('s1._domainkey.sender.test', sender.record),
        txt('_dmarc.sender.test', 'v=DMARC1; p=reject'),
      ],
    });
    // The outside sender's message, signed once with its own key (as its MTA would).
    const plain = benchMessage('alice@sender.test', 'c@held.test', SIZE);
    const { header, body: b } = splitMessage([plain]);
    const sig = await dkimSignatures(
      [{ domain: 'sender.test', selector: 's1', key: createPrivateKey(sender.pem), algorithm: 'rsa-sha256' }],
      header,
      b,
      Date.now(),
    );
    const signed = Buffer.concat([Buffer.from(sig.join(''), 'latin1'), plain]);
    const base = (extra: string) => `
hostname = "mx.bench.test"
local = []
[smtp]
listen = ["127.0.0.1:0"]
relay_networks = ["127.0.0.1/32"]
max_connections_per_ip = 1000
[odmr]
listen = []
[[odmr.account]]
user = "held"
password = "x"
domains = ["held.test"]
[log]
level = "warn"
[dns]
servers = ["${dns?.address}"]
${extra}`;
    const configs: Config[] = [
      {
        name: 'all off',
        toml: base(''),
        localAddress: '127.0.0.1',
        from: 'a@example.org',
        data: benchMessage('a@example.org', 'c@held.test', SIZE),
      },
      {
        name: 'DKIM signing, RSA-2048',
        toml: base('[[dkim]]\ndomain = "example.org"\nselector = "s1"\nkey_file = "rsa.pem"\n'),
        localAddress: '127.0.0.1',
        from: 'a@example.org',
        data: benchMessage('a@example.org', 'c@held.test', SIZE),
      },
      {
        name: 'DKIM signing, Ed25519',
        toml: base('[[dkim]]\ndomain = "example.org"\nselector = "e1"\nkey_file = "ed.pem"\n'),
        localAddress: '127.0.0.1',
        from: 'a@example.org',
        data: benchMessage('a@example.org', 'c@held.test', SIZE),
      },
      {
        name: 'SPF+DKIM+DMARC checks (outside)',
        toml: base('[auth]\nchecks = true\n'),
        localAddress: '127.0.0.2',
        from: 'alice@sender.test',
        data: signed,
      },
    ];
    // --baseline DIR (repeatable): "all off" on each of those builds too. --only-off: nothing else.
    const others = process.argv.flatMap((a, i) =>
      a === '--baseline' ? [process.argv[i + 1] as string] : [],
    );
    others.forEach((other, k) => {
      // An older build knows none of [dns], [auth], [[dkim]]: give it only what it knows.
      const oldToml = base('').replace(/\[dns\]\nservers = .*\n/, '');
      configs.splice(1 + k, 0, {
        name: `all off (build in ${other.split('/').pop()})`,
        toml: oldToml,
        bin: join(other, 'bin', 'logmta.js'),
        localAddress: '127.0.0.1',
        from: 'a@example.org',
        data: benchMessage('a@example.org', 'c@held.test', SIZE),
      });
    });
    if (process.argv.includes('--only-off')) configs.splice(1 + others.length);
    const ports: number[] = [];
    for (const [i, c] of configs.entries()) {
      const d = join(dir, `c${i}`);
      const file = join(dir, `c${i}.toml`);
      writeFileSync(file, `data_dir = "${d}"\n${c.toml}`);
      const bd = await startBenchDaemon(file, { cwd: dir, ...(c.bin ? { bin: c.bin } : {}) });
      daemons.push(bd);
      ports.push(bd.smtpPort);
    }
    const rates: number[][] = configs.map(() => []);
    // CPU time of the daemon per accepted message: far steadier than the rate on a shared machine.
    const cpu: number[][] = configs.map(() => []);
    console.log(
      `auth-bench: ${SESSIONS} sessions, ${SIZE}-byte messages, ${SECS} s x ${ROUNDS} rounds per configuration`,
    );
    console.log(
      `load average at start: ${(await import('node:os'))
        .loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, c] of configs.entries()) {
        const pid = daemons[i]?.child.pid;
        const c0 = cpuSeconds(pid);
        const count = await smtpLoad({
          port: ports[i] as number,
          sessions: SESSIONS,
          secs: SECS,
          from: c.from,
          to: 'c@held.test',
          data: c.data,
          localAddress: c.localAddress,
        });
        const us = count > 0 ? ((cpuSeconds(pid) - c0) / count) * 1e6 : 0;
        const rate = count / SECS;
        rates[i]?.push(rate);
        cpu[i]?.push(us);
        console.log(
          `  round ${round + 1}  ${c.name.padEnd(34)} ${rate.toFixed(0).padStart(6)} msg/s  ${us.toFixed(0).padStart(6)} µs CPU/msg`,
        );
      }
    }
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? 0;
    const off = median(rates[0] ?? []);
    const offCpu = median(cpu[0] ?? []);
    console.log('\nmedians: accept rate (msg/s) and daemon CPU per message, each relative to all off:');
    for (const [i, c] of configs.entries()) {
      const m = median(rates[i] ?? []);
      const u = median(cpu[i] ?? []);
      console.log(
        `  ${c.name.padEnd(34)} ${m.toFixed(0).padStart(6)} ${((m / off) * 100).toFixed(1).padStart(6)} %   ` +
          `${u.toFixed(0).padStart(6)} µs ${((u / offCpu) * 100).toFixed(1).padStart(6)} %`,
      );
    }
    console.log(
      `load average at end: ${(await import('node:os'))
        .loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}`,
    );
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    await dns?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
