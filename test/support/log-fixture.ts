// Test support for the `logmta log` tools: builds a real queue directory on disk through the
// Queue facade (Queue.open, accept, a deliverer), so the tools are tested on the bytes the
// queue actually writes, and captures a command's output. Used by log-verify.test.ts and
// log-dump.test.ts only; never shipped.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Queue } from '../../src/queue/queue.js';
import { waitFor } from './wait.js';

export interface Fixture {
  dir: string;
  /** The queue directory inside `dir`. */
  queue: string;
  /** Messages that should be live (deferred to the retry lane, or never attempted). */
  live: number;
  cleanup(): void;
}

/** A message of exactly `size` bytes whose first line is `Subject: m<i>`. */
function body(i: number, size: number): Buffer {
  const head = `Subject: m${i}\r\n\r\n`;
  return Buffer.from(`${head}${'x'.repeat(Math.max(0, size - head.length - 2))}\r\n`, 'latin1');
}

/**
 * First run: `attempted` messages, half delivered and half deferred to the first retry rung.
 * Second run (after a restart, nothing delivered): `waiting` more messages stay in `new`.
 */
export async function buildQueue(opts: {
  segmentSize: number;
  attempted: number;
  waiting: number;
  size?: number;
}): Promise<Fixture> {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'logmta-cli-'));
  const queue = join(dir, 'queue');
  const size = opts.size ?? 1000;
  let outcomes = 0;
  const q1 = await Queue.open({
    dir: queue,
    segmentSize: opts.segmentSize,
    hooks: {
      onEvent: (e) => {
        if (e.type === 'delivered' || e.type === 'deferred') outcomes++;
      },
    },
  });
  q1.setDeliverer(async (job) => {
    await job.finish(
      job.pending.map((rcpt) => {
        const later = job.envelope.info.recipients[rcpt]!.address.startsWith('later');
        return later
          ? { rcpt, status: 'deferred' as const, code: 451, text: '4.3.0 try later', host: 'mx.y.test' }
          : { rcpt, status: 'delivered' as const, code: 250, text: '2.0.0 ok', host: 'mx.y.test' };
      }),
    );
  });
  q1.start();
  for (let i = 0; i < opts.attempted; i++) {
    await q1.accept({
      data: [body(i, size)],
      sender: 'a@x.test',
      recipients: [{ address: i % 2 === 1 ? `later${i}@y.test` : `ok${i}@y.test` }],
    });
  }
  await waitFor(() => outcomes >= opts.attempted, `fixture: ${opts.attempted} attempts to finish`);
  await q1.stop();
  const q2 = await Queue.open({ dir: queue, segmentSize: opts.segmentSize });
  for (let i = 0; i < opts.waiting; i++) {
    await q2.accept({
      data: [body(1000 + i, size)],
      sender: 'b@x.test',
      recipients: [{ address: `w${i}@z.test` }],
    });
  }
  await q2.stop();
  return {
    dir,
    queue,
    live: Math.floor(opts.attempted / 2) + opts.waiting,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** Copies the queue directory (to damage the copy). */
export function copyQueue(f: Fixture, name: string): string {
  const to = join(f.dir, name);
  fs.cpSync(f.queue, to, { recursive: true });
  return to;
}

/** Segment files of a lane, oldest first. */
export function segmentsOf(queue: string, lane: string): string[] {
  return fs
    .readdirSync(join(queue, 'lanes', lane))
    .filter((n) => n.endsWith('.seg'))
    .sort()
    .map((n) => join(queue, 'lanes', lane, n));
}

/** Every file under `dir` with its bytes, to prove a tool wrote nothing. */
export function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(p, fs.readFileSync(p).toString('base64'));
    }
  };
  walk(dir);
  return out;
}

/** An Io whose output is collected as strings. */
export function captureIo(): {
  io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
  out: () => string;
  err: () => string;
} {
  const o: string[] = [];
  const e: string[] = [];
  const sink = (into: string[]) =>
    new Writable({
      write(chunk, _enc, cb) {
        into.push(String(chunk));
        cb();
      },
    });
  return { io: { stdout: sink(o), stderr: sink(e) }, out: () => o.join(''), err: () => e.join('') };
}
