// Fills a logmta data directory for the ETRN/ATRN benchmark: N small messages held for "other"
// domains (spread round-robin over `others` domains) plus `perTarget` messages for each target
// domain, the target messages interleaved evenly through the fill (so their envelopes and data
// are scattered over the whole log, as mail trickling in over days would be). It writes the
// queue directly (Queue.open with fdatasync off, parallel accept()), the layout the daemon then
// recovers. Also the TOML the daemon reads, so its ETRN domains and ODMR account match.
// Invariant: every message has one recipient and goes straight to its domain's held lane.
// Fails: rejects on any queue error (the directory is then incomplete; the caller removes it).

import { join } from 'node:path';
import { Queue, internals } from '../src/queue/queue.js';

export interface FillPlan {
  /** Messages for the other domains. */
  n: number;
  /** Number of other domains. */
  others: number;
  /** Target domains, each getting `perTarget` messages. */
  targets: readonly string[];
  perTarget: number;
  /** Message size in bytes (headers + body, CRLF). */
  size: number;
}

export const otherDomain = (k: number): string => `other${k}.example`;

/** A message of exactly `size` bytes (CRLF line ends, lines under 80 characters). */
export function benchMessage(size: number): Buffer {
  const head = 'From: <sender@bench.test>\r\nTo: <someone@example.test>\r\nSubject: etrn bench\r\n\r\n';
  const lines: string[] = [];
  let len = head.length;
  while (len < size) {
    const left = size - len;
    const n = Math.min(72, Math.max(left - 2, 0));
    lines.push('x'.repeat(n));
    len += n + 2;
  }
  const b = Buffer.from(head + lines.map((l) => `${l}\r\n`).join(''), 'latin1');
  return b.length > size ? b.subarray(0, size) : b;
}

/** Writes the plan's messages into `queueDir`; resolves with the fill time and log bytes. */
export async function fillHeld(
  queueDir: string,
  plan: FillPlan,
  onProgress?: (done: number, total: number) => void,
): Promise<{ ms: number; bytes: number; messages: number }> {
  const q = await Queue.open({ dir: queueDir, sync: false });
  const data = [benchMessage(plan.size)];
  const targetCount = plan.targets.length * plan.perTarget;
  const total = plan.n + targetCount;
  // Target message j goes at position floor((j + 0.5) * total / targetCount).
  const every = targetCount > 0 ? total / targetCount : Number.POSITIVE_INFINITY;
  let nextTarget = 0;
  let nextOther = 0;
  const t0 = performance.now();
  let next = 0;
  const producer = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      let domain: string;
      let local: string;
      if (nextTarget < targetCount && i >= Math.floor((nextTarget + 0.5) * every)) {
        const j = nextTarget++;
        domain = plan.targets[j % plan.targets.length]!;
        local = `t${j}`;
      } else {
        const k = nextOther++;
        domain = otherDomain(k % plan.others);
        local = `u${k}`;
      }
      await q.accept({
        data,
        sender: 'sender@bench.test',
        recipients: [{ address: `${local}@${domain}` }],
        destinations: [{ kind: 'held', domain }],
      });
      if (onProgress && i % 50_000 === 0) onProgress(i, total);
    }
  };
  await Promise.all(Array.from({ length: 256 }, producer));
  const ms = performance.now() - t0;
  const bytes = internals(q).writer.stats.bytes;
  await q.stop();
  return { ms, bytes, messages: total };
}

export interface BenchToml {
  dataDir: string;
  odmrPort: number;
  /** Where the target ETRN domains deliver. */
  sinkPort: number;
  /** Where the other ETRN domains would deliver (a closed port; their lanes are never flushed). */
  deadPort: number;
  others: number;
  etrnTargets: readonly string[];
  atrnTargets: readonly string[];
  user: string;
  password: string;
}

/** The daemon's configuration for a benchmark data directory. */
export function benchToml(o: BenchToml): string {
  const lines = [
    'hostname = "bench.test"',
    `data_dir = ${JSON.stringify(o.dataDir)}`,
    '',
    '[smtp]',
    'listen = ["127.0.0.1:0"]',
    '',
    '[log]',
    'level = "info"',
    '',
    '[odmr]',
    `listen = ["127.0.0.1:${o.odmrPort}"]`,
    '',
    '[[odmr.account]]',
    `user = ${JSON.stringify(o.user)}`,
    `password = ${JSON.stringify(o.password)}`,
    `domains = ${JSON.stringify(o.atrnTargets)}`,
  ];
  // Probes every 24 h: none runs during the benchmark, so only ETRN flushes anything.
  const etrn = (domain: string, port: number): void => {
    lines.push(
      '',
      '[[etrn]]',
      `domain = "${domain}"`,
      `host = "127.0.0.1:${port}"`,
      'probe_interval = "24h"',
    );
  };
  for (const d of o.etrnTargets) etrn(d, o.sinkPort);
  for (let k = 0; k < o.others; k++) etrn(otherDomain(k), o.deadPort);
  return `${lines.join('\n')}\n`;
}

export const queueDirOf = (dataDir: string): string => join(dataDir, 'queue');
