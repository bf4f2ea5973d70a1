// Recovery's CRC checks in a second thread (frame-check.ts, record/frame.ts checkedPrefix): a
// scan told how far the CRCs were checked must find exactly what a scan that checks them itself
// finds, however a segment is damaged; the thread hands back the bytes it was given; and
// recovery with the thread ends in the same state, with the same report, as without it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { checkedPrefix } from '../record/frame.js';
import { Queue } from '../queue.js';
import type { RecoveryReport } from '../recovery.js';
import { FrameChecker } from './frame-check.js';
import { type ScannedRecord, scanSegment } from './reader.js';
import { load, msg, snapshot } from '../../../test/support/queue.js';
import { FakeClock } from '../../../test/support/clock.js';
import { MemQueueFs } from '../../../test/support/memfs.js';

const NEW1 = '/q/lanes/new/0000000001.seg';

/** A queue directory (in memory) whose new lane holds `n` messages in one segment. */
async function filled(n: number): Promise<MemQueueFs> {
  const fs = new MemQueueFs();
  const q = await Queue.open({ dir: '/q', fs, clock: new FakeClock() });
  for (let i = 0; i < n; i++)
    await q.accept({
      data: msg(`message ${i} ${'x'.repeat(i * 7)}`),
      sender: 'a@x.test',
      recipients: [{ address: `r${i}@y.test` }],
      ...(i % 3 === 0 ? { destinations: [{ kind: 'held' as const, domain: 'held.test' }] } : {}),
    });
  return fs;
}

function scan(buf: Buffer, newest: boolean, checkedTo: number) {
  const recs: Array<Omit<ScannedRecord, 'body'> & { body: string }> = [];
  const result = scanSegment(
    buf,
    newest,
    (r) => recs.push({ ...r, body: r.body.toString('hex') }),
    checkedTo,
  );
  return { result, recs };
}

type Damage =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'cut'; at: number }
  | { kind: 'zeros'; at: number; len: number };

function damaged(seg: Buffer, ds: Damage[]): Buffer {
  let b = Buffer.from(seg);
  for (const d of ds) {
    const at = Math.floor(d.at * b.length);
    if (d.kind === 'flip' && at < b.length) b[at] = b[at]! ^ (1 << d.bit);
    else if (d.kind === 'cut') b = b.subarray(0, at);
    else if (d.kind === 'zeros') b.fill(0, at, Math.min(b.length, at + d.len));
  }
  return b;
}

const damage: fc.Arbitrary<Damage> = fc.oneof(
  fc.record({
    kind: fc.constant('flip' as const),
    at: fc.double({ min: 0, max: 0.9999, noNaN: true }),
    bit: fc.integer({ min: 0, max: 7 }),
  }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('zeros' as const),
    at: fc.double({ min: 0, max: 0.9999, noNaN: true }),
    len: fc.integer({ min: 1, max: 600 }),
  }),
);

describe('CRC checks in a second thread', () => {
  test('a scan told what checkedPrefix found agrees with a scan that checks every CRC, however the segment is damaged', async () => {
    const seg = (await filled(40)).peek(NEW1);
    assert.equal(checkedPrefix(seg), seg.length, 'an intact segment is checked to its end');
    fc.assert(
      fc.property(fc.array(damage, { maxLength: 3 }), fc.boolean(), (ds, newest) => {
        const b = damaged(seg, ds);
        const to = checkedPrefix(b);
        assert.ok(to <= b.length);
        assert.deepEqual(scan(b, newest, to), scan(b, newest, 0));
      }),
      { numRuns: 1500 },
    );
  });

  test('the thread hands back the bytes it was given, with how far their CRCs hold; a pooled slice is checked by nobody there', async () => {
    const seg = (await filled(40)).peek(NEW1);
    const checker = new FrameChecker((e) => assert.fail(String(e)));
    try {
      const own = Buffer.alloc(seg.length);
      seg.copy(own);
      const bad = Buffer.alloc(seg.length);
      seg.copy(bad);
      const flip = Math.floor(seg.length / 2);
      bad[flip] = bad[flip]! ^ 1;
      const [a, b] = await Promise.all([
        checker.check(own, () => assert.fail('no reread')),
        checker.check(bad, () => assert.fail('no reread')),
      ]);
      assert.equal(own.length, 0, 'the memory was transferred, not copied');
      assert.ok(a.buf.equals(seg));
      assert.equal(a.checkedTo, seg.length);
      assert.equal(
        b.checkedTo,
        checkedPrefix(damaged(seg, [{ kind: 'flip', at: flip / seg.length, bit: 0 }])),
      );
      assert.ok(b.checkedTo < flip);
      const pooled = Buffer.from('not a whole ArrayBuffer');
      const c = await checker.check(pooled, () => assert.fail('no reread'));
      assert.equal(c.buf, pooled);
      assert.equal(c.checkedTo, 0);
    } finally {
      await checker.close();
    }
  });

  test('checks still waiting when the thread ends are answered by reading the file again, unchecked', async () => {
    const seg = (await filled(10)).peek(NEW1);
    const checker = new FrameChecker();
    const own = Buffer.alloc(seg.length);
    seg.copy(own);
    const pending = checker.check(own, async () => Buffer.from(seg));
    await checker.close();
    const r = await pending;
    assert.ok(r.buf.equals(seg));
    // Closed: later checks are not sent anywhere.
    const again = Buffer.alloc(seg.length);
    seg.copy(again);
    const later = await checker.check(again, () => assert.fail('no reread'));
    assert.equal(later.buf, again);
    assert.equal(later.checkedTo, 0);
  });

  test('recovery with the thread ends as recovery without it: intact, torn tail, flipped bit mid-lane', async () => {
    const base = snapshot(await filled(60));
    const seg = base.get(NEW1)!;
    const cases: Array<[string, Buffer]> = [
      ['intact', seg],
      ['torn tail', seg.subarray(0, seg.length - 37)],
      ['flipped bit', damaged(seg, [{ kind: 'flip', at: 0.5, bit: 3 }])],
    ];
    for (const [name, bytes] of cases) {
      const open = async (threadBytes: number) => {
        const files = new Map(base);
        files.set(NEW1, Buffer.from(bytes));
        const fs = await load(files);
        const q = await Queue.open({
          dir: '/q',
          fs,
          clock: new FakeClock(),
          recoveryCheckThreadBytes: threadBytes,
        });
        const { ms: _ms, checkedByThread, ...report } = q.recovery as RecoveryReport;
        const state = { report, live: q.heldCount('held.test'), files: [...snapshot(fs)].sort() };
        await q.close();
        return { state, checkedByThread };
      };
      const withThread = await open(0);
      const without = await open(Number.POSITIVE_INFINITY);
      assert.equal(without.checkedByThread, 0);
      assert.ok(withThread.checkedByThread > 0, `${name}: the thread checked the segments`);
      assert.deepEqual(withThread.state, without.state, name);
    }
  });
});
