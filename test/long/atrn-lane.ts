// Long run (outside CI; test/integration/odmr-large-lane.test.ts is the bounded version): ATRN of
// one ODMR domain that holds N messages. The queue is filled directly (fdatasync off), a real
// `logmta serve` recovers it, and a hand-written customer logs in (CRAM-MD5), sends ATRN, greets
// after the turnaround and takes every message. Measured: ATRN → 250, → the first message's
// MAIL FROM, → the last message; the daemon's RSS before, peak during the session, after.
// Usage: node dist/test/long/atrn-lane.js [--messages 50000] [--size 1024] [--keep]
//        [--node-flags "--max-old-space-size=64"]
// Prints a summary and a JSON line; exit code 0 when every message arrived once.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startBenchDaemon } from '../../bench/etrn-daemon.js';
import { benchToml, fillHeld, queueDirOf } from '../../bench/etrn-fill.js';
import { freePort, ReplyReader, serveSmtp } from '../../bench/etrn-smtp.js';
import { cramMd5Response } from '../../src/smtp/client/auth.js';
import { MiB } from '../support/bigmail.js';

const DOMAIN = 'customer.example';
const USER = 'cust';
const PASSWORD = 'cust-secret';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '50000' },
      size: { type: 'string', default: '1024' },
      keep: { type: 'boolean', default: false },
      /** Extra flags for the daemon's node, e.g. "--max-old-space-size=64". */
      'node-flags': { type: 'string', default: '' },
    },
  });
  const n = Number(values.messages);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'logmta-atrn-'));
  const dataDir = path.join(dir, 'data');
  const fill = await fillHeld(queueDirOf(dataDir), {
    n: 0,
    others: 0,
    targets: [DOMAIN],
    perTarget: n,
    size: Number(values.size),
  });
  process.stdout.write(`filled ${n} held messages in ${(fill.ms / 1000).toFixed(1)} s\n`);
  const odmrPort = await freePort();
  const cfg = path.join(dir, 'logmta.toml');
  writeFileSync(
    cfg,
    benchToml({
      dataDir,
      odmrPort,
      sinkPort: 9,
      deadPort: 9,
      others: 0,
      etrnTargets: [],
      atrnTargets: [DOMAIN],
      user: USER,
      password: PASSWORD,
    }),
  );
  const nodeFlags = values['node-flags'].split(' ').filter((x) => x !== '');
  const d = await startBenchDaemon(cfg, { timeoutMs: 300_000, nodeFlags });
  await new Promise((r) => setTimeout(r, 2000)); // recovery's garbage collected, first reclaim done
  const before = d.memory().rss;
  let peak = before;
  const sampler = setInterval(() => {
    peak = Math.max(peak, d.memory().rss);
  }, 20);
  const c = await ReplyReader.connect(odmrPort);
  await c.read();
  await c.ask('EHLO customer.test');
  const ch = await c.ask('AUTH CRAM-MD5');
  const auth = await c.ask(cramMd5Response(USER, PASSWORD, ch.slice(4).trim()));
  if (!auth.startsWith('235')) throw new Error(`AUTH: ${auth}`);
  const t0 = performance.now();
  const r = await c.ask(`ATRN ${DOMAIN}`);
  const replyMs = performance.now() - t0;
  if (!r.startsWith('250')) throw new Error(`ATRN: ${r.trim()}`);
  if (!c.detach()) throw new Error('the provider spoke before our 220');
  let count = 0;
  let first = 0;
  let last = 0;
  const seen = new Set<string>();
  let dup = 0;
  await serveSmtp(
    c.socket,
    (a) => {
      count++;
      if (count === 1) first = a.at - t0;
      last = a.at - t0;
      for (const x of a.recipients) {
        if (seen.has(x)) dup++;
        seen.add(x);
      }
    },
    { name: 'customer.test' },
  );
  clearInterval(sampler);
  peak = Math.max(peak, d.memory().rss);
  await new Promise((res) => setTimeout(res, 2000));
  const after = d.memory().rss;
  const ok = count === n && dup === 0;
  process.stdout.write(
    [
      `ATRN of ${n} held messages of ${values.size} bytes`,
      `ATRN -> 250: ${replyMs.toFixed(0)} ms; first message ${first.toFixed(0)} ms; last (${count}) ${(last / 1000).toFixed(1)} s`,
      `daemon RSS MiB: before ${(before / MiB).toFixed(1)}, peak ${(peak / MiB).toFixed(1)}, after ${(after / MiB).toFixed(1)}`,
      `every message once: ${ok}${dup > 0 ? ` (${dup} duplicates)` : ''}`,
    ].join('\n') + '\n',
  );
  process.stdout.write(
    `${JSON.stringify({ messages: n, replyMs, firstMs: first, lastMs: last, received: count, duplicates: dup, rssBeforeMiB: before / MiB, rssPeakMiB: peak / MiB, rssAfterMiB: after / MiB, ok })}\n`,
  );
  await d.stop();
  if (values.keep) process.stdout.write(`kept ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
  process.exitCode = ok ? 0 : 1;
}

main().catch((e) => {
  process.stderr.write(`atrn-lane: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 2;
});
