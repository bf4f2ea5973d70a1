// Reader and recovery failure modes, one test per mode (docs/queue-states.md): torn tail, torn
// header, zero-filled tail, bit flips in the newest and in an older segment, missing segment,
// empty segment. Each builds a real queue on MemQueueFs, damages the files, and recovers.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { encodeFrame, readFrame } from '../record/frame.js';
import { isRecordType, RT_DATA, RT_DONE, RT_ENVELOPE, decodeDataId } from '../record/records.js';
import { internals, Queue } from '../queue.js';
import { type ScannedRecord, scanSegment } from './reader.js';
import { load, msg, snapshot } from '../../../test/support/queue.js';
import { FakeClock } from '../../../test/support/clock.js';
import { MemQueueFs } from '../../../test/support/memfs.js';

const NEW1 = '/q/lanes/new/0000000001.seg';

function records(buf: Buffer): ScannedRecord[] {
  const out: ScannedRecord[] = [];
  scanSegment(buf, true, (r) => out.push({ ...r }));
  return out;
}

async function acceptN(q: Queue, n: number, tag = 'm') {
  const ids: number[] = [];
  for (let i = 0; i < n; i++)
    ids.push(
      (
        await q.accept({
          data: msg(`${tag}${i}`),
          sender: 'a@x.test',
          recipients: [{ address: `r${i}@y.test` }],
        })
      ).msgId,
    );
  return ids;
}

async function dataOf(q: Queue, id: number): Promise<string> {
  return (await q.readData(internals(q).core.msgs.byId.get(id)!, id)).toString();
}

describe('segment reader (pure)', () => {
  test('a bad record followed by a valid one is corruption even in the newest segment', () => {
    const head = Buffer.concat(encodeFrame(1, [Buffer.from('{"format":1}')]));
    const a = Buffer.concat(encodeFrame(RT_DONE, [Buffer.alloc(15, 1)]));
    const b = Buffer.concat(encodeFrame(RT_DONE, [Buffer.alloc(15, 2)]));
    const buf = Buffer.concat([head, a, b]);
    buf[head.length + 12]! ^= 0x10;
    const scan = scanSegment(buf, true, () => {});
    assert.equal(scan.tornAt, undefined);
    assert.equal(scan.corruption?.offset, head.length);
    assert.match(scan.corruption!.reason, /checksum mismatch \(valid record follows at \d+\)/);
    assert.equal(scan.records, 0);
  });

  test('an incomplete final record of an older segment is corruption, not a torn tail', () => {
    const head = Buffer.concat(encodeFrame(1, [Buffer.from('{"format":1}')]));
    const a = Buffer.concat(encodeFrame(RT_DONE, [Buffer.alloc(15, 1)]));
    const buf = Buffer.concat([head, a.subarray(0, 12)]);
    assert.equal(scanSegment(buf, true, () => {}).tornAt, head.length);
    const old = scanSegment(buf, false, () => {});
    assert.equal(old.tornAt, undefined);
    assert.deepEqual(old.corruption, { offset: head.length, reason: 'incomplete record' });
  });
});

/**
 * The scan as it was before span checks: every frame's CRC checked on its own. The span check
 * must give the same records and the same outcome for any damage.
 */
function frameByFrame(buf: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let off = 0; off < buf.length; ) {
    const r = readFrame(buf, off, isRecordType);
    if (r.kind !== 'record') break;
    if (off > 0) out.push([off, r.type]);
    off = r.next;
  }
  return out;
}

describe('span checks (pure)', () => {
  test('under random damage, a scan finds exactly the records a frame-by-frame check finds', () => {
    const head = Buffer.concat(encodeFrame(1, [Buffer.from('{"format":1}')]));
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 200 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 3 }),
        fc.integer({ min: 1, max: 600 }),
        (sizes, flips, seed) => {
          const frames = sizes.map((n, i) =>
            Buffer.concat(encodeFrame(i % 3 === 0 ? RT_DATA : RT_DONE, [Buffer.alloc(n, (i * seed) & 255)])),
          );
          const buf = Buffer.concat([head, ...frames]);
          for (const [at, bits] of flips) buf[head.length + (at % (buf.length - head.length))]! ^= bits;
          const seen: Array<[number, number]> = [];
          const scan = scanSegment(buf, false, (r) => seen.push([r.offset, r.type]));
          const expect = frameByFrame(buf);
          assert.deepEqual(seen, expect);
          assert.equal(scan.records, expect.length);
          assert.equal(scan.corruption !== undefined, flips.length > 0 && expect.length < frames.length);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('recovery failure modes', () => {
  test('a torn final record is cut at every byte offset; earlier records stay and later appends work', async () => {
    const clock = new FakeClock();
    const fs0 = new MemQueueFs();
    const q0 = await Queue.open({ dir: '/q', fs: fs0, clock });
    const [a, b] = await acceptN(q0, 2);
    const full = fs0.peek(NEW1);
    const last = records(full).at(-1)!;
    assert.equal(last.type, RT_ENVELOPE);
    const files = snapshot(fs0);
    for (let cut = last.offset; cut < last.offset + last.length; cut++) {
      const f = new Map(files);
      f.set(NEW1, full.subarray(0, cut));
      const fs = await load(f);
      const q = await Queue.open({ dir: '/q', fs, clock });
      const r = q.recovery!;
      assert.deepEqual(r.corruptions, [], `cut at ${cut}`);
      assert.deepEqual(
        r.tornTails,
        cut > last.offset
          ? [{ segment: 'new/0000000001.seg', offset: last.offset, cut: cut - last.offset }]
          : [],
      );
      assert.equal(fs.peek(NEW1).length, last.offset, 'the torn bytes are gone');
      assert.equal(r.liveMessages, 1);
      assert.equal(await dataOf(q, a!), msg('m0')[0]!.toString());
      assert.ok(
        !internals(q).core.msgs.byId.has(b!),
        'the message whose envelope was torn was never acknowledged',
      );
      const c = await q.accept({ data: msg('c'), sender: '', recipients: [{ address: 'c@y.test' }] });
      fs.crash();
      const q2 = await Queue.open({ dir: '/q', fs, clock });
      assert.deepEqual(q2.recovery!.tornTails, []);
      assert.deepEqual(q2.recovery!.corruptions, []);
      assert.equal(await dataOf(q2, a!), msg('m0')[0]!.toString());
      assert.equal(await dataOf(q2, c.msgId), msg('c')[0]!.toString());
    }
  });

  test('a torn final record before a header-only next segment is a torn tail, not corruption', async () => {
    const clock = new FakeClock();
    const fs0 = new MemQueueFs();
    const q0 = await Queue.open({ dir: '/q', fs: fs0, clock, segmentSize: 4096 });
    // Accept until the writer has created the next segment ahead of need (header only).
    let n = 0;
    const ids: number[] = [];
    while (!fs0.paths().includes('/q/lanes/new/0000000002.seg'))
      ids.push(...(await acceptN(q0, 1, `p${n++}`)));
    const full = fs0.peek(NEW1);
    const last = records(full).at(-1)!;
    const files = snapshot(fs0);
    files.set(NEW1, full.subarray(0, last.offset + 5));
    const fs = await load(files);
    const q = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 });
    assert.deepEqual(q.recovery!.corruptions, []);
    assert.deepEqual(q.recovery!.tornTails, [{ segment: 'new/0000000001.seg', offset: last.offset, cut: 5 }]);
    assert.equal(q.recovery!.liveMessages, ids.length - 1);
    await q.accept({ data: msg('after'), sender: '', recipients: [{ address: 'c@y.test' }] });
    fs.crash();
    const q2 = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 });
    assert.deepEqual(q2.recovery!.corruptions, []);
    assert.equal(q2.recovery!.liveMessages, ids.length);
  });

  test('a zero-filled tail (space the file system extended) is the end of the log: not damage, records intact, cut before appends continue', async () => {
    const clock = new FakeClock();
    const fs0 = new MemQueueFs();
    const ids = await acceptN(await Queue.open({ dir: '/q', fs: fs0, clock }), 3);
    const files = snapshot(fs0);
    const end = files.get(NEW1)!.length;
    files.set(NEW1, Buffer.concat([files.get(NEW1)!, Buffer.alloc(8192)]));
    const fs = await load(files);
    const q = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q.recovery!.tornTails, [], 'zeros are not damage: no torn tail is reported');
    assert.equal(fs.peek(NEW1).length, end, 'the zeros are cut before anything is appended');
    assert.deepEqual(q.recovery!.corruptions, []);
    for (const id of ids) assert.ok(internals(q).core.msgs.byId.has(id));
    const c = await q.accept({ data: msg('c'), sender: '', recipients: [{ address: 'c@y.test' }] });
    fs.crash();
    const q2 = await Queue.open({ dir: '/q', fs, clock });
    assert.equal(q2.recovery!.liveMessages, 4);
    assert.equal(await dataOf(q2, c.msgId), msg('c')[0]!.toString());
  });

  test('a torn write whose later part reached the disk (zeros, then stale record bytes) is cut before anything is appended', async () => {
    const clock = new FakeClock();
    const fs0 = new MemQueueFs();
    const ids = await acceptN(await Queue.open({ dir: '/q', fs: fs0, clock }), 6);
    const full = fs0.peek(NEW1);
    const recs = records(full);
    // The last four messages' records were one write; only its end, inside the last record,
    // reached the disk (what LazyFS's torn-op leaves): a hole of zeros, then stale bytes.
    const from = recs.at(-8)!.offset;
    const keep = recs.at(-1)!.offset + 5;
    const torn = Buffer.concat([full.subarray(0, from), Buffer.alloc(keep - from), full.subarray(keep)]);
    const files = snapshot(fs0);
    files.set(NEW1, torn);
    const fs = await load(files);
    const q = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q.recovery!.corruptions, []);
    assert.deepEqual(q.recovery!.tornTails, [
      { segment: 'new/0000000001.seg', offset: from, cut: full.length - from },
    ]);
    assert.equal(fs.peek(NEW1).length, from, 'the newest segment ends at its last good record');
    assert.equal(q.recovery!.liveMessages, 2);
    const c = await q.accept({ data: msg('c'), sender: '', recipients: [{ address: 'c@y.test' }] });
    const end = fs.peek(NEW1).length;
    assert.ok(end < full.length, 'the new records are shorter than the torn region');
    assert.deepEqual(
      records(fs.peek(NEW1)).at(-1)!.offset + records(fs.peek(NEW1)).at(-1)!.length,
      end,
      'no stale byte after the new end of the log',
    );
    fs.crash();
    const q2 = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q2.recovery!.tornTails, [], 'the next start finds a clean end');
    assert.deepEqual(q2.recovery!.corruptions, []);
    assert.equal(q2.recovery!.liveMessages, 3);
    for (const id of [ids[0]!, ids[1]!, c.msgId]) assert.ok(internals(q2).core.msgs.byId.has(id));
  });

  test('a flipped bit mid-lane is reported with segment and offset, set aside, earlier live records salvaged, other lanes untouched', async () => {
    const clock = new FakeClock();
    const fs = new MemQueueFs();
    const q0 = await Queue.open({ dir: '/q', fs, clock });
    const [a, b, c] = await acceptN(q0, 3);
    const held = await q0.accept({
      data: msg('held'),
      sender: 'a@x.test',
      recipients: [{ address: 'h@held.test' }],
      destinations: [{ kind: 'held', domain: 'held.test' }],
    });
    const recs = records(fs.peek(NEW1));
    const envB = recs.find((r) => r.type === RT_ENVELOPE && decodeDataId(r.body) === b)!;
    const flip = envB.offset + Math.floor(envB.length / 2);
    fs.corrupt(NEW1, flip, Buffer.from([fs.peek(NEW1)[flip]! ^ 0x04]));
    const q = await Queue.open({ dir: '/q', fs, clock });
    const r = q.recovery!;
    assert.equal(r.corruptions.length, 1);
    assert.deepEqual(
      { ...r.corruptions[0]!, reason: r.corruptions[0]!.reason.replace(/ \(.*/, '') },
      {
        segment: 'new/0000000001.seg',
        offset: envB.offset,
        reason: 'checksum mismatch',
        setAsideAs: 'quarantine/new-0000000001.seg',
        salvaged: 2, // a's envelope and a's data
      },
    );
    assert.ok(fs.paths().includes('/q/quarantine/new-0000000001.seg'));
    assert.ok(!fs.paths().includes(NEW1));
    assert.equal(q.heldCount('held.test'), 1, 'the held lane is not affected');
    assert.equal(await dataOf(q, a!), msg('m0')[0]!.toString());
    assert.ok(
      !internals(q).core.msgs.byId.has(b!) && !internals(q).core.msgs.byId.has(c!),
      'records at and after the damage are lost',
    );
    // The salvage is durable: a power cut now changes nothing, and the gap is not reported.
    fs.crash();
    const q2 = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q2.recovery!.corruptions, []);
    assert.deepEqual(q2.recovery!.missingSegments, []);
    assert.equal(await dataOf(q2, a!), msg('m0')[0]!.toString());
    assert.equal(q2.heldCount('held.test'), 1);
    assert.equal(await dataOf(q2, held.msgId), msg('held')[0]!.toString());
  });

  test('a flipped bit in an older segment is corruption even in its final record; later segments are intact', async () => {
    const clock = new FakeClock();
    const fs = new MemQueueFs();
    const q0 = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 });
    const ids = await acceptN(q0, 60);
    const seg2 = '/q/lanes/new/0000000002.seg';
    assert.ok(fs.paths().includes('/q/lanes/new/0000000004.seg'), 'several segments');
    const last = records(fs.peek(seg2)).at(-1)!;
    const victim = decodeDataId(last.body);
    fs.corrupt(seg2, last.offset + 20, Buffer.from([fs.peek(seg2)[last.offset + 20]! ^ 0x80]));
    const q = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 });
    const r = q.recovery!;
    assert.equal(r.corruptions.length, 1);
    assert.equal(r.corruptions[0]!.segment, 'new/0000000002.seg');
    assert.equal(r.corruptions[0]!.offset, last.offset);
    assert.deepEqual(r.tornTails, []);
    for (const id of ids) assert.equal(internals(q).core.msgs.byId.has(id), id !== victim, `message ${id}`);
    fs.crash();
    const q2 = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 });
    assert.deepEqual(q2.recovery!.missingSegments, [], 'a segment set aside is an expected gap');
    assert.equal(q2.recovery!.liveMessages, ids.length - 1);
  });

  test('a missing segment in a lane is reported as a gap', async () => {
    const clock = new FakeClock();
    const fs = new MemQueueFs();
    await acceptN(await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 }), 40);
    await fs.unlink('/q/lanes/new/0000000002.seg');
    await fs.syncDir('/q/lanes/new');
    const q = await Queue.open({ dir: '/q', fs, clock, segmentSize: 4096 });
    assert.deepEqual(q.recovery!.missingSegments, ['new/0000000002.seg']);
    assert.deepEqual(q.recovery!.corruptions, []);
  });

  test('an empty newest segment is skipped and appends continue in the next one', async () => {
    const clock = new FakeClock();
    const fs0 = new MemQueueFs();
    const [a] = await acceptN(await Queue.open({ dir: '/q', fs: fs0, clock }), 1);
    const files = snapshot(fs0);
    files.set('/q/lanes/new/0000000002.seg', Buffer.alloc(0));
    const fs = await load(files);
    const q = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q.recovery!.corruptions, []);
    assert.deepEqual(q.recovery!.tornTails, []);
    const c = await q.accept({ data: msg('c'), sender: '', recipients: [{ address: 'c@y.test' }] });
    assert.ok(fs.paths().includes('/q/lanes/new/0000000003.seg'), 'the empty segment is not appended to');
    assert.equal(fs.peek('/q/lanes/new/0000000002.seg').length, 0);
    fs.crash();
    const q2 = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q2.recovery!.corruptions, []);
    assert.ok(internals(q2).core.msgs.byId.has(a!) && internals(q2).core.msgs.byId.has(c.msgId));
  });

  test('a torn segment header is cut to nothing, wherever the segment is, and the lane goes on', async () => {
    const clock = new FakeClock();
    const fs0 = new MemQueueFs();
    const [a] = await acceptN(await Queue.open({ dir: '/q', fs: fs0, clock }), 1);
    const files = snapshot(fs0);
    const header = records(files.get(NEW1)!)[0]!.offset; // the header's length
    files.set('/q/lanes/new/0000000002.seg', files.get(NEW1)!.subarray(0, header - 5));
    const fs = await load(files);
    const q = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q.recovery!.tornTails, [{ segment: 'new/0000000002.seg', offset: 0, cut: header - 5 }]);
    const c = await q.accept({ data: msg('c'), sender: '', recipients: [{ address: 'c@y.test' }] });
    fs.crash();
    // Now the headerless segment is no longer the newest: still not corruption.
    const q2 = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q2.recovery!.corruptions, []);
    assert.ok(internals(q2).core.msgs.byId.has(a!) && internals(q2).core.msgs.byId.has(c.msgId));
  });

  test('a corrupt newest segment is set aside and later appends start a new segment', async () => {
    const clock = new FakeClock();
    const fs = new MemQueueFs();
    const [a, b] = await acceptN(await Queue.open({ dir: '/q', fs, clock }), 2);
    const recs = records(fs.peek(NEW1));
    const envA = recs.find((r) => r.type === RT_ENVELOPE && decodeDataId(r.body) === a)!;
    fs.corrupt(NEW1, envA.offset + 40, Buffer.from([fs.peek(NEW1)[envA.offset + 40]! ^ 1]));
    const q = await Queue.open({ dir: '/q', fs, clock });
    assert.equal(q.recovery!.corruptions.length, 1);
    assert.ok(!internals(q).core.msgs.byId.has(a!) && !internals(q).core.msgs.byId.has(b!));
    const c = await q.accept({ data: msg('c'), sender: '', recipients: [{ address: 'c@y.test' }] });
    assert.ok(fs.paths().includes('/q/lanes/new/0000000002.seg'));
    fs.crash();
    const q2 = await Queue.open({ dir: '/q', fs, clock });
    assert.deepEqual(q2.recovery!.corruptions, []);
    assert.equal(await dataOf(q2, c.msgId), msg('c')[0]!.toString());
  });
});
