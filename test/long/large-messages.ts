// Long run (outside CI; test/faults/large-messages.test.ts is the bounded version): `logmta
// serve` as a child process takes N concurrent messages of S bytes (DATA or BDAT) for local
// Maildir delivery or relaying to a sink, and the daemon's RSS is sampled before, during (peak)
// and after (everything delivered, then idle). Every message must arrive exactly once with the
// digest it was sent with.
// Usage: node dist/test/long/large-messages.js [--count 20] [--size-mb 46] [--mode data|bdat]
//        [--chunk-kb 64] [--relay] [--budget 256MiB] [--idle-s 5] [--keep]
// Prints one table row per phase and a JSON line; exit code 0 when every message arrived once
// with the right digest, 1 otherwise.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  type BigMessage,
  digestFromHeader,
  digestOf,
  MiB,
  peakRssOf,
  rssOf,
  sendBig,
  tagOf,
} from '../support/bigmail.js';
import { spawnDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const fmt = (n: number): string => (n / MiB).toFixed(1);

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '20' },
      'size-mb': { type: 'string', default: '46' },
      mode: { type: 'string', default: 'data' },
      'chunk-kb': { type: 'string', default: '64' },
      relay: { type: 'boolean', default: false },
      budget: { type: 'string' },
      'idle-s': { type: 'string', default: '5' },
      keep: { type: 'boolean', default: false },
    },
  });
  const count = Number(values.count);
  const size = Math.round(Number(values['size-mb']) * MiB);
  const mode = values.mode === 'bdat' ? 'bdat' : 'data';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logmta-large-'));
  const sink = values.relay
    ? await SmtpSink.start({ pipelining: true, chunking: true, digestOnly: true })
    : undefined;
  const toml = [
    'hostname = "large.test"',
    '[smtp]',
    `max_message_size = "${Math.ceil(size / MiB) + 10}MiB"`,
    'relay_networks = ["127.0.0.0/8"]',
    'max_connections_per_ip = 1000',
    '[queue]',
    ...(values.budget ? [`memory_budget = "${values.budget}"`] : []),
    '[[local]]',
    'domain = "localhost"',
    ...(sink ? ['[[route]]', 'domain = "sink.test"', `host = "127.0.0.1:${sink.port}"`] : []),
    '[log]',
    'level = "warn"',
  ].join('\n');
  const d = await spawnDaemon({ toml, dir, startTimeoutMs: 30_000 });
  const pid = d.child.pid;
  await sleep(1000);
  const before = rssOf(pid);
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
  }, 50);
  const msgs: BigMessage[] = Array.from({ length: count }, (_, i) => ({ tag: `m${i}`, size }));
  const t0 = Date.now();
  const results = await Promise.all(
    msgs.map((m, i) =>
      sendBig(m, {
        port: d.port,
        to: [sink ? `u${i}@sink.test` : `u${i}@localhost`],
        mode,
        chunk: Number(values['chunk-kb']) * 1024,
        timeoutMs: 600_000,
      }),
    ),
  );
  const acceptMs = Date.now() - t0;
  const accepted = results.filter((r) => r.reply.startsWith('250')).length;
  const peakAccept = Math.max(peak, peakRssOf(pid));
  // Delivered: a Maildir file per message (local) or a sink transaction (relay).
  const mailRoot = path.join(d.dir, 'data', 'mail');
  const found = (): Map<string, string[]> => {
    const out = new Map<string, string[]>();
    if (sink) {
      for (const tx of sink.transactions) {
        const tag = tx.tag ?? '?';
        out.set(tag, [...(out.get(tag) ?? []), tx.digest ?? '']);
      }
      return out;
    }
    for (const u of readdirSync(mailRoot, { withFileTypes: true }).filter((e) => e.isDirectory())) {
      const nd = path.join(mailRoot, u.name, 'new');
      for (const f of readdirSync(nd)) {
        const text = readFileSync(path.join(nd, f));
        const tag = tagOf(text) ?? '?';
        out.set(tag, [...(out.get(tag) ?? []), digestFromHeader(text, tag) ?? '']);
      }
    }
    return out;
  };
  const countDelivered = (): number => {
    if (sink) return sink.transactions.length;
    try {
      return readdirSync(mailRoot).reduce((n, u) => {
        try {
          return n + readdirSync(path.join(mailRoot, u, 'new')).length;
        } catch {
          return n;
        }
      }, 0);
    } catch {
      return 0;
    }
  };
  await waitFor(() => countDelivered() >= accepted, `${accepted} deliveries`, 900_000);
  const deliverMs = Date.now() - t0;
  const peakAll = Math.max(peak, peakRssOf(pid));
  await sleep(Number(values['idle-s']) * 1000);
  clearInterval(sampler);
  const after = rssOf(pid);
  const got = found();
  let ok = accepted === count;
  for (const m of msgs) {
    const want = digestOf(m);
    const list = got.get(m.tag) ?? [];
    const expect = sink ? want.crlf : want.lf;
    if (list.length !== 1 || list[0] !== expect) {
      ok = false;
      process.stdout.write(
        `${m.tag}: ${list.length} copies, digest ${list[0] === expect ? 'ok' : 'WRONG'}\n`,
      );
    }
  }
  process.stdout.write(
    [
      `messages ${count} × ${fmt(size)} MiB via ${mode.toUpperCase()}${mode === 'bdat' ? ` (${values['chunk-kb']} KiB chunks)` : ''}, ${sink ? 'relayed to a sink' : 'local Maildir'}`,
      `accepted ${accepted}/${count} in ${(acceptMs / 1000).toFixed(1)} s; delivered in ${(deliverMs / 1000).toFixed(1)} s`,
      `daemon RSS MiB: before ${fmt(before)}, peak while accepting ${fmt(peakAccept)}, peak ${fmt(peakAll)}, after ${values['idle-s']} s idle ${fmt(after)}`,
      `every message delivered once with its digest: ${ok}`,
    ].join('\n') + '\n',
  );
  process.stdout.write(
    `${JSON.stringify({ count, sizeMiB: size / MiB, mode, relay: !!sink, accepted, acceptMs, deliverMs, rssBeforeMiB: before / MiB, rssPeakMiB: peakAll / MiB, rssAfterMiB: after / MiB, ok })}\n`,
  );
  await d.stop();
  await sink?.close();
  if (values.keep) process.stdout.write(`kept ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
  process.exitCode = ok ? 0 : 1;
}

main().catch((e) => {
  process.stderr.write(`large-messages: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 2;
});
