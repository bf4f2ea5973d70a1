// The individual measurements of the queue benchmark (queue-bench.ts runs them and prints the
// table). Each one works in its own fresh directory under the given parent and removes it when
// done, so a run leaves nothing behind but what the caller prints.
//
// Invariant: a measurement never shares a queue directory or a process-wide cache with another
// (recovery runs in a fresh child process, see recoverChild). Failures propagate as exceptions;
// the caller removes the directory in a finally block.
import * as fs from 'node:fs';
import { join } from 'node:path';
import { Queue, internals } from '../src/queue/queue.js';
import { RT_DATA, RT_DELTA, RT_DONE, RT_ENVELOPE } from '../src/queue/record/records.js';
import type { DeliveryJob } from '../src/queue/types.js';
import { FakeClock } from '../test/support/clock.js';

export function tempDir(parent: string, tag: string): string {
  return fs.mkdtempSync(join(parent, `logmta-bench-${tag}-`));
}

/** Queue option for a segment size given on the command line (default: the queue's own). */
function seg(segmentSize: number | undefined): { segmentSize?: number } {
  return segmentSize === undefined ? {} : { segmentSize };
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** A message of exactly `size` bytes with realistic headers and CRLF lines. */
export function makeMessage(size: number): Buffer {
  const head =
    'Received: from client.example.test (client.example.test [192.0.2.7])\r\n' +
    '\tby mx.example.test with ESMTP; Mon, 1 Jan 2024 00:00:00 +0000\r\n' +
    'From: <sender@example.test>\r\nTo: <rcpt@example.net>\r\nSubject: benchmark\r\n' +
    'Message-ID: <bench@example.test>\r\n\r\n';
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n';
  let body = head;
  while (body.length < size) body += line;
  return Buffer.from(body.slice(0, size - 2) + '\r\n', 'latin1');
}

// ------------------------------------------------------------------ the physical reference

/** Single-stream rate of `append 64 bytes + fdatasync` in `parent` (like fsync-rate.py). */
export function fsyncRate(parent: string, secs: number): { ops: number; perSec: number; avgMs: number } {
  const dir = tempDir(parent, 'fsync');
  try {
    const fd = fs.openSync(join(dir, 'append'), 'a', 0o600);
    const buf = Buffer.alloc(64, 'x');
    let n = 0;
    const t0 = performance.now();
    const end = t0 + secs * 1000;
    try {
      while (performance.now() < end) {
        fs.writeSync(fd, buf);
        fs.fdatasyncSync(fd);
        n++;
      }
    } finally {
      fs.closeSync(fd);
    }
    const el = (performance.now() - t0) / 1000;
    return { ops: n, perSec: n / el, avgMs: (el * 1000) / n };
  } finally {
    removeDir(dir);
  }
}

// ------------------------------------------------------------------ durable enqueue

export interface EnqueueResult {
  size: number;
  producers: number;
  msgs: number;
  secs: number;
  msgsPerSec: number;
  mbPerSec: number;
  batches: number;
  msgsPerBatch: number;
  datasyncs: number;
  avgSyncMs: number;
  /**
   * CPU time of this process (user + system, every thread: the thread pool's writes and
   * fdatasyncs included) per message, µs. Unlike the rates it hardly moves with the machine's load.
   */
  cpuUsPerMsg: number;
  /** Steady-state runs (`deliver`): messages delivered (their outcome durable) within the run. */
  delivered?: number;
  /** New segments that reused a spare's file rather than a new file (log/spares.ts). */
  sparesTaken: number;
}

/** `producers` loops of durable accept() of `size`-byte messages for `secs` seconds. */
export async function enqueueRun(
  parent: string,
  size: number,
  producers: number,
  secs: number,
  segmentSize?: number,
  /**
   * Steady state: every message is delivered as soon as it is accepted (a deliverer that
   * finishes at once, through the queue's own runner), so that segments are reclaimed and their
   * files come back as spares, as in a daemon whose mail goes out.
   */
  deliver = false,
): Promise<EnqueueResult> {
  const dir = tempDir(parent, 'enqueue');
  try {
    const q = await Queue.open({ dir, sync: true, ...seg(segmentSize) });
    let delivered = 0;
    if (deliver) {
      q.setDeliverer(async (job) => {
        await job.finish(
          job.pending.map((rcpt) => ({
            rcpt,
            status: 'delivered',
            code: 250,
            text: '2.0.0 Ok',
            host: 'mx.example.net',
          })),
        );
        delivered++;
      });
      q.start();
    }
    const data = [makeMessage(size)]; // one buffer shared by every message: no per-message copy
    const st0 = { ...internals(q).writer.stats };
    let msgs = 0;
    let syncMsSum = 0;
    internals(q).writer.onBatch = (_r, _b, ms) => {
      syncMsSum += ms;
    };
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const end = t0 + secs * 1000;
    const producer = async (p: number) => {
      while (performance.now() < end) {
        await q.accept({
          data,
          sender: `sender${p}@example.test`,
          recipients: [{ address: `rcpt${msgs}@example.net` }],
          client: { helo: 'client.example.test', addr: '192.0.2.7' },
        });
        msgs++;
      }
    };
    await Promise.all(Array.from({ length: producers }, (_, p) => producer(p)));
    const el = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const deliveredInRun = delivered;
    const sparesTaken = internals(q).spares.stats.taken;
    const st = internals(q).writer.stats;
    const batches = st.batches - st0.batches;
    await q.stop();
    return {
      size,
      producers,
      msgs,
      secs: el,
      msgsPerSec: msgs / el,
      mbPerSec: (msgs * size) / el / 1e6,
      batches,
      msgsPerBatch: batches > 0 ? msgs / batches : 0,
      datasyncs: st.datasyncs - st0.datasyncs,
      avgSyncMs: batches > 0 ? syncMsSum / batches : 0,
      cpuUsPerMsg: msgs > 0 ? (cpu.user + cpu.system) / msgs : 0,
      ...(deliver ? { delivered: deliveredInRun } : {}),
      sparesTaken,
    };
  } finally {
    removeDir(dir);
  }
}

// ------------------------------------------------------------------ recovery (child processes)

/** Fills `dir` with `n` live messages of `size` bytes, fdatasync off (benchmark switch). */
export async function fillQueue(
  dir: string,
  n: number,
  size: number,
  segmentSize?: number,
): Promise<{ ms: number; bytes: number }> {
  const q = await Queue.open({ dir, sync: false, ...seg(segmentSize) });
  const data = [makeMessage(size)];
  let next = 0;
  const t0 = performance.now();
  const producer = async () => {
    while (next < n) {
      const i = next++;
      await q.accept({
        data,
        sender: 'sender@example.test',
        recipients: [{ address: `rcpt${i}@example.net` }],
      });
    }
  };
  await Promise.all(Array.from({ length: 256 }, producer));
  const ms = performance.now() - t0;
  const bytes = internals(q).writer.stats.bytes;
  await q.stop();
  return { ms, bytes };
}

export interface RecoverMeasure {
  openMs: number;
  recoveryMs: number;
  liveMessages: number;
  segments: number;
  bytes: number;
  heapBefore: number;
  heapAfter: number;
  extBefore: number;
  extAfter: number;
  rssBefore: number;
  rssAfter: number;
  /** Capacity of the index's typed-array columns (messages, pieces, lane FIFOs). */
  indexBytes: number;
}

/**
 * Memory after full collections, once external (ArrayBuffer) memory stops shrinking: the backing
 * stores of freed Buffers (the segment files recovery read) are released after the collection
 * that finds them dead, so one gc() is not enough to stop counting them.
 */
async function settledMemory(gc: () => void): Promise<NodeJS.MemoryUsage> {
  let m = process.memoryUsage();
  for (let i = 0; i < 20; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 25));
    const next = process.memoryUsage();
    const stable = next.arrayBuffers >= m.arrayBuffers - 4096 && next.heapUsed >= m.heapUsed - 65536;
    m = next;
    if (stable && i > 0) break;
  }
  return m;
}

/** Runs in a fresh process started with --expose-gc: opens the queue and measures. */
export async function recoverMeasure(dir: string): Promise<RecoverMeasure> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('recovery child needs --expose-gc');
  const m0 = await settledMemory(gc);
  const t0 = performance.now();
  const q = await Queue.open({ dir });
  const openMs = performance.now() - t0;
  const m1 = await settledMemory(gc);
  const r = q.recovery!;
  const out: RecoverMeasure = {
    openMs,
    recoveryMs: r.ms,
    liveMessages: r.liveMessages,
    segments: r.segments,
    bytes: r.bytes,
    heapBefore: m0.heapUsed,
    heapAfter: m1.heapUsed,
    // Typed-array columns of the index live outside the V8 heap: count them too.
    extBefore: m0.arrayBuffers,
    extAfter: m1.arrayBuffers,
    rssBefore: m0.rss,
    rssAfter: m1.rss,
    indexBytes:
      internals(q).core.msgs.bytes() +
      internals(q).core.pieces.bytes() +
      internals(q).core.lanes.reduce((a, l) => a + l.fifo.bytes(), 0),
  };
  // Keep the queue reachable until after the second measurement.
  if (internals(q).core.msgs.count !== r.liveMessages) out.liveMessages = internals(q).core.msgs.count;
  await q.stop();
  return out;
}

// ------------------------------------------------------------------ bytes written per message

export interface BytesResult {
  deferrals: number;
  msgs: number;
  size: number;
  /** Bytes appended per message, by record type (frame headers included). */
  perType: { data: number; envelope: number; delta: number; done: number };
  total: number;
  /** The writer's own count (queue.writer.stats.bytes delta) per message: a cross-check. */
  statsPerMsg: number;
  attempts: number;
}

/**
 * Accepts `msgs` messages, delivers each on attempt `deferrals + 1` (deferring before that on
 * the default retry ladder under a manual clock), and counts every byte the writer appended.
 */
export async function bytesPerMessage(
  parent: string,
  msgs: number,
  size: number,
  deferrals: number,
  segmentSize?: number,
): Promise<BytesResult> {
  const dir = tempDir(parent, 'bytes');
  try {
    const clock = new FakeClock();
    let delivered = 0;
    let attempts = 0;
    const q = await Queue.open({ dir, clock, sync: true, ...seg(segmentSize) });
    const byType = new Map<number, number>();
    const append = internals(q).writer.append.bind(internals(q).writer);
    // Instrument the writer from outside: tally each appended frame by record type.
    internals(q).writer.append = (lane, type, body, phase, onPlaced) => {
      let n = 9;
      for (const b of body) n += b.length;
      byType.set(type, (byType.get(type) ?? 0) + n);
      append(lane, type, body, phase, onPlaced);
    };
    const bytes0 = internals(q).writer.stats.bytes;
    const deliverer = async (job: DeliveryJob) => {
      attempts++;
      const status = job.envelope.info.attempts >= deferrals ? 'delivered' : 'deferred';
      await job.finish(
        job.pending.map((rcpt) =>
          status === 'delivered'
            ? { rcpt, status, code: 250, text: '2.0.0 Ok: queued as ABC', host: 'mx.example.net' }
            : { rcpt, status, code: 451, text: '4.3.0 try again later', host: 'mx.example.net' },
        ),
      );
      if (status === 'delivered') delivered++;
    };
    q.setDeliverer(deliverer);
    q.start();
    const data = [makeMessage(size)];
    await Promise.all(
      Array.from({ length: msgs }, (_, i) =>
        q.accept({
          data,
          sender: 'sender@example.test',
          recipients: [{ address: `rcpt${i}@example.net` }],
          client: { helo: 'client.example.test', addr: '192.0.2.7' },
        }),
      ),
    );
    const deadline = performance.now() + 60_000;
    while (delivered < msgs) {
      if (performance.now() > deadline) throw new Error(`only ${delivered}/${msgs} delivered after 60 s`);
      await new Promise((r) => setTimeout(r, 20));
      clock.advance(5 * 60_000);
    }
    const statsPerMsg = (internals(q).writer.stats.bytes - bytes0) / msgs;
    await q.stop();
    const per = (t: number) => (byType.get(t) ?? 0) / msgs;
    const perType = {
      data: per(RT_DATA),
      envelope: per(RT_ENVELOPE),
      delta: per(RT_DELTA),
      done: per(RT_DONE),
    };
    return {
      deferrals,
      msgs,
      size,
      perType,
      total: perType.data + perType.envelope + perType.delta + perType.done,
      statsPerMsg,
      attempts,
    };
  } finally {
    removeDir(dir);
  }
}
