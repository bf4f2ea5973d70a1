import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { scanSegment } from '../queue/log/reader.js';
import { Queue } from '../queue/queue.js';
import { dumpSegment } from './log-dump.js';
import { type VerifyReport, verifyQueue } from '../queue/index.js';
import { run } from './log-verify.js';
import {
  buildQueue,
  captureIo,
  copyQueue,
  type Fixture,
  segmentsOf,
  snapshot,
} from '../../test/support/log-fixture.js';

async function verifyJson(dir: string): Promise<{ code: number; report: VerifyReport }> {
  const c = captureIo();
  const code = await run(['--json', dir], c.io);
  return { code, report: JSON.parse(c.out()) as VerifyReport };
}

/** Offsets of the records (after the header) of a segment file. */
function recordOffsets(path: string): number[] {
  const offs: number[] = [];
  scanSegment(fs.readFileSync(path), true, (r) => offs.push(r.offset));
  return offs;
}

describe('logmta log verify', () => {
  let f: Fixture;
  before(async () => {
    // Small segments: the lanes span several files.
    f = await buildQueue({ segmentSize: 4096, attempted: 4, waiting: 8 });
  });
  after(() => f.cleanup());

  test('a queue written by the queue is clean and its live counts match recovery', async () => {
    const { code, report } = await verifyJson(f.queue);
    assert.equal(code, 0);
    assert.equal(report.status, 'clean');
    assert.equal(report.liveMessages, f.live);
    assert.equal(report.liveEnvelopes, f.live);
    const retry = report.lanes.find((l) => l.name === 'retry-300s')!;
    assert.equal(retry.liveEnvelopes, 2);
    assert.equal(retry.records.envelope, 2);
    const nl = report.lanes.find((l) => l.name === 'new')!;
    assert.equal(nl.liveMessages, 8);
    assert.ok(nl.segments >= 3, `new lane spans ${nl.segments} segments`);
    assert.ok(report.garbageRatio > 0 && report.garbageRatio < 1);
    assert.equal(report.missingData.length, 0);
    // The same directory, opened for real (on a copy: Queue.open writes), agrees.
    const copy = copyQueue(f, 'opened');
    const q = await Queue.open({ dir: copy, segmentSize: 4096 });
    assert.equal(q.recovery!.liveMessages, report.liveMessages);
    assert.equal(
      q.recovery!.records,
      report.lanes.reduce(
        (a, l) => a + l.records.data + l.records.envelope + l.records.delta + l.records.done,
        0,
      ),
    );
    await q.stop();
  });

  test('the human report lists every lane and ends with the verdict', async () => {
    const c = captureIo();
    assert.equal(await run([f.queue], c.io), 0);
    const out = c.out();
    for (const lane of ['new', 'data', 'retry-300s', 'total'])
      assert.match(out, new RegExp(`^${lane}\\s`, 'm'));
    assert.match(out, /result: clean\n$/);
  });

  test('a torn final record is reported as a torn tail (exit 1) and nothing is written', async () => {
    const copy = copyQueue(f, 'torn');
    const newest = segmentsOf(copy, 'new').at(-1)!;
    const size = fs.statSync(newest).size;
    // The first 20 bytes of a copy of the header frame: an incomplete record.
    fs.appendFileSync(newest, fs.readFileSync(newest).subarray(0, 20));
    const before = snapshot(copy);
    const { code, report } = await verifyJson(copy);
    assert.equal(code, 1);
    assert.equal(report.status, 'torn');
    const nl = report.lanes.find((l) => l.name === 'new')!;
    assert.deepEqual(nl.tornTails, [{ segment: `new/${newest.split('/').at(-1)}`, offset: size, bytes: 20 }]);
    assert.equal(report.liveMessages, f.live);
    assert.deepEqual(snapshot(copy), before, 'verify changed the directory');
  });

  test('verify reports exactly the torn tails and corruptions that recovery then finds, for every crash leftover', async () => {
    // A lane whose writer has created the next segment ahead of need (header only).
    const dir = fs.mkdtempSync(join(f.dir, 'ahead-'));
    const queue = join(dir, 'queue');
    const q0 = await Queue.open({ dir: queue, segmentSize: 4096 });
    for (let i = 0; !fs.existsSync(join(queue, 'lanes/new/0000000002.seg')); i++)
      await q0.accept({
        data: [Buffer.from(`Subject: a${i}\r\n\r\n${'y'.repeat(300)}\r\n`)],
        sender: '',
        recipients: [{ address: `a${i}@y.test` }],
      });
    await q0.stop();
    const seg1 = join(queue, 'lanes/new/0000000001.seg');
    const full = fs.readFileSync(seg1);
    const offs = recordOffsets(seg1);
    const last = offs.at(-1)!;
    // Each damage of segment 1 (segment 2 is header-only after it) with the exit code expected.
    const damages: Array<[string, Buffer, number]> = [
      // A torn final record: recovery's state S2, a crash leftover, not corruption.
      ['torn tail before a header-only segment', full.subarray(0, last + 7), 1],
      // A torn write whose earlier part never reached the disk: zeros, then stale bytes.
      [
        'zeros then stale bytes before a header-only segment',
        Buffer.concat([
          full.subarray(0, offs.at(-3)!),
          Buffer.alloc(last + 5 - offs.at(-3)!),
          full.subarray(last + 5),
        ]),
        1,
      ],
      // Zeros alone are the end of the log: nothing to report.
      ['a zero-filled tail', Buffer.concat([full, Buffer.alloc(3000)]), 0],
      // Zeros before a whole valid record: corruption, in the newest segment as anywhere.
      [
        'zeros before a valid record',
        Buffer.concat([
          full.subarray(0, offs.at(-2)!),
          Buffer.alloc(last - offs.at(-2)!),
          full.subarray(last),
        ]),
        2,
      ],
    ];
    for (const [what, bytes, expected] of damages) {
      const copy = join(dir, what.replaceAll(' ', '-'));
      fs.cpSync(queue, copy, { recursive: true });
      fs.writeFileSync(join(copy, 'lanes/new/0000000001.seg'), bytes);
      const { code, report } = await verifyJson(copy);
      const nl = report.lanes.find((l) => l.name === 'new')!;
      const q = await Queue.open({ dir: copy, segmentSize: 4096 });
      const r = q.recovery!;
      await q.stop();
      assert.deepEqual(
        nl.tornTails.map((t) => ({ segment: t.segment, offset: t.offset, cut: t.bytes })),
        r.tornTails,
        `${what}: torn tails`,
      );
      assert.deepEqual(
        nl.corruptions,
        r.corruptions.map((c) => ({ segment: c.segment, offset: c.offset, reason: c.reason })),
        `${what}: corruptions`,
      );
      assert.equal(code, expected, `${what}: exit code`);
      assert.equal(report.liveMessages, r.liveMessages, `${what}: live messages`);
    }
  });

  test('a bad checksum in an older segment is corruption with the segment and byte offset (exit 2)', async () => {
    const copy = copyQueue(f, 'corrupt');
    const first = segmentsOf(copy, 'new')[0]!;
    const off = recordOffsets(first)[0]!;
    const buf = fs.readFileSync(first);
    buf[off + 20] = buf[off + 20]! ^ 0xff;
    fs.writeFileSync(first, buf);
    const { code, report } = await verifyJson(copy);
    assert.equal(code, 2);
    assert.equal(report.status, 'corrupt');
    const c = report.lanes.find((l) => l.name === 'new')!.corruptions;
    assert.equal(c.length, 1);
    assert.equal(c[0]!.segment, `new/${first.split('/').at(-1)}`);
    assert.equal(c[0]!.offset, off);
    assert.match(c[0]!.reason, /checksum/);
  });

  test('a gap in a lane’s segment numbers is reported as a missing segment (exit 2)', async () => {
    const copy = copyQueue(f, 'gap');
    const segs = segmentsOf(copy, 'new');
    const gone = segs[1]!;
    fs.unlinkSync(gone);
    const { code, report } = await verifyJson(copy);
    assert.equal(code, 2);
    assert.deepEqual(report.lanes.find((l) => l.name === 'new')!.missingSegments, [
      `new/${gone.split('/').at(-1)}`,
    ]);
  });

  test('a live envelope whose data record is gone is reported as missing data, which recovery ends (exit 1)', async () => {
    const copy = copyQueue(f, 'nodata');
    // The retry lane's messages keep their data in the data lane: remove that lane. (A copy
    // still in an unreclaimed `new` segment would serve, as it would for recovery.)
    fs.rmSync(join(copy, 'lanes', 'data'), { recursive: true });
    const retryIds = dumpSegment(fs.readFileSync(segmentsOf(copy, 'retry-300s')[0]!))
      .entries.filter((e) => e.type === 'envelope')
      .map((e) => e.id);
    const report = await verifyQueue(copy);
    assert.equal(report.status, 'torn');
    assert.ok(report.missingData.length >= 1);
    for (const id of report.missingData) assert.ok(retryIds.includes(id), `${id} is a retry-lane message`);
    assert.equal(report.liveMessages, f.live - report.missingData.length);
    const c = captureIo();
    assert.equal(await run([copy], c.io), 1);
    assert.match(c.out(), /missing data: message [0-9A-F]{13} has a live envelope but no data record/);
    // Recovery agrees (opening writes, so only now): it ends exactly those messages.
    const q = await Queue.open({ dir: copy, segmentSize: 4096 });
    assert.deepEqual([...q.recovery!.missingData].sort(), [...report.missingData].sort());
    assert.equal(q.recovery!.liveMessages, report.liveMessages);
    await q.stop();
  });

  test('an older version without its Done is an incomplete move that recovery restores (exit 1)', async () => {
    const g = await buildQueue({ segmentSize: 1 << 20, attempted: 2, waiting: 0 });
    try {
      const seg = segmentsOf(g.queue, 'new')[0]!;
      const buf = fs.readFileSync(seg);
      const moved = dumpSegment(buf).entries.find((e) => e.type === 'done' && e.reason === 'moved')!;
      // Drop the Done: as if the crash came between the two phases of the move's batch.
      fs.writeFileSync(
        seg,
        Buffer.concat([buf.subarray(0, moved.offset), buf.subarray(moved.offset + moved.length)]),
      );
      const { code, report } = await verifyJson(g.queue);
      assert.equal(code, 1);
      assert.deepEqual(report.incompleteMoves, [`${moved.id}:0`]);
      assert.equal(report.liveMessages, g.live);
      const q = await Queue.open({ dir: g.queue, segmentSize: 1 << 20 });
      assert.equal(q.recovery!.repaired, 1);
      assert.equal(q.recovery!.liveMessages, report.liveMessages);
      await q.stop();
    } finally {
      g.cleanup();
    }
  });

  test('a missing directory or one without lanes/ exits 66; bad arguments exit 64', async () => {
    const c = captureIo();
    assert.equal(await run([join(f.dir, 'nope')], c.io), 66);
    assert.match(c.err(), /no such directory/);
    const empty = join(f.dir, 'empty');
    fs.mkdirSync(empty);
    assert.equal(await run([empty], c.io), 66);
    assert.match(c.err(), /not a queue directory/);
    assert.equal(await run(['--bogus', f.queue], c.io), 64);
    assert.equal(await run([f.queue, f.queue], c.io), 64);
  });
});

describe('log verify and log dump of streamed (chunked) data', () => {
  test('a live message in chunks is clean and live; chunks of a message never accepted are garbage; dump lists the chunks', async () => {
    const dir = fs.mkdtempSync(join(fs.realpathSync('/tmp'), 'logmta-chunks-'));
    try {
      const queueDir = join(dir, 'queue');
      const q = await Queue.open({ dir: queueDir, segmentSize: 16 * 1024, chunkSize: 2000 });
      const body = Buffer.alloc(30_000, 'y');
      const live = q.spool(5e15);
      for (let at = 0; at < body.length; at += 3000) {
        if (!live.write(body.subarray(at, at + 3000))) await live.drained();
      }
      await q.accept({
        data: live,
        sender: 'a@x.test',
        recipients: [{ address: 'b@h.test' }],
        destinations: [{ kind: 'held', domain: 'h.test' }],
      });
      // Cut off: chunks on disk, never an envelope.
      const cut = q.spool(5e15 + 1);
      for (let at = 0; at < 12_000; at += 3000) {
        if (!cut.write(body.subarray(at, at + 3000))) await cut.drained();
      }
      await cut.settled();
      await q.stop(); // crash-only: the cut spool is simply left behind
      const { code, report } = await verifyJson(queueDir);
      assert.equal(code, 0, JSON.stringify(report));
      assert.equal(report.liveMessages, 1);
      const data = report.lanes.find((l) => l.name === 'data')!;
      assert.ok(data.records.data >= 8, `${data.records.data} chunk records`);
      assert.ok(data.liveBytes >= body.length, 'the live copy counts');
      assert.ok(data.liveBytes < data.bytes, 'the orphan chunks are garbage');
      const q2 = await Queue.open({ dir: queueDir, segmentSize: 16 * 1024 });
      assert.equal(q2.recovery!.liveMessages, 1);
      assert.equal(q2.recovery!.orphanData, 1);
      await q2.stop();
      const seg = segmentsOf(queueDir, 'data')[0]!;
      const dump = dumpSegment(fs.readFileSync(seg));
      const chunks = dump.entries.filter((e) => e.type === 'chunk');
      assert.ok(chunks.length > 0);
      // Each chunk: where it sits in the message (`at`), its size, whether it is the last.
      let next = 0;
      for (const c of chunks.filter((x) => x.id === chunks[0]!.id)) {
        assert.equal(c.at, next);
        next += c.size as number;
      }
      assert.ok(chunks.some((c) => c.last === true) || segmentsOf(queueDir, 'data').length > 1);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
