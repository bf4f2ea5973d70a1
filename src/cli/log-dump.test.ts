import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type DumpEntry, dumpSegment, run } from './log-dump.js';
import { buildQueue, captureIo, type Fixture, segmentsOf } from '../../test/support/log-fixture.js';

async function dumpJson(path: string): Promise<{ code: number; entries: DumpEntry[] }> {
  const c = captureIo();
  const code = await run(['--json', path], c.io);
  const lines = c
    .out()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as DumpEntry);
  assert.equal(lines.at(-1)!.type, 'summary');
  return { code, entries: lines.slice(0, -1) };
}

describe('logmta log dump', () => {
  let f: Fixture;
  let newSeg: string;
  before(async () => {
    // Large segments: each lane is one file, so the new lane's holds every record type.
    f = await buildQueue({ segmentSize: 1 << 20, attempted: 4, waiting: 2 });
    newSeg = segmentsOf(f.queue, 'new')[0]!;
  });
  after(() => f.cleanup());

  test('every record of a segment is listed with its decoded fields', async () => {
    const { code, entries } = await dumpJson(newSeg);
    assert.equal(code, 0);
    const types = entries.map((e) => e.type);
    assert.equal(types[0], 'header');
    assert.deepEqual((entries[0]!.header as { lane: string; seq: number }).lane, 'new');
    assert.equal(types.filter((t) => t === 'data').length, 6);
    assert.equal(types.filter((t) => t === 'envelope').length, 6);
    const data = entries.find((e) => e.type === 'data')!;
    assert.equal(data.firstLine, 'Subject: m0');
    assert.equal(data.size, 1000);
    assert.match(String(data.id), /^[0-9A-F]{13}$/);
    const env = entries.find((e) => e.type === 'envelope')!;
    assert.equal(env.id, data.id);
    assert.equal(env.version, 1);
    assert.equal((env.info as { sender: string }).sender, 'a@x.test');
    // Two delivered (completed) and two deferred (their first version ended as moved).
    const reasons = entries.filter((e) => e.type === 'done').map((e) => e.reason);
    assert.deepEqual(reasons.filter((r) => r === 'completed').length, 2);
    assert.deepEqual(reasons.filter((r) => r === 'moved').length, 2);
    // Offsets chain: each record starts where the previous one ended.
    for (let i = 1; i < entries.length; i++)
      assert.equal(entries[i]!.offset, entries[i - 1]!.offset + entries[i - 1]!.length);
    assert.equal(entries.at(-1)!.offset + entries.at(-1)!.length, fs.statSync(newSeg).size);
  });

  test('the human format shows one line per record', async () => {
    const c = captureIo();
    assert.equal(await run([newSeg], c.io), 0);
    const out = c.out();
    assert.match(out, /^\s+0\s+\d+\s+header\s+\{"format":2,"lane":"new"/m);
    assert.match(out, /\bdata\s+id=[0-9A-F]{13} size=1000 first="Subject: m0"$/m);
    assert.match(out, /\benvelope\s+id=[0-9A-F]{13} piece=0 v1 due=\S+Z arrival=\S+Z rcpts=1 \{"sender"/m);
    assert.match(out, /\bdone\s+id=[0-9A-F]{13} piece=0 v1 moved$/m);
    assert.match(out, /: \d+ bytes, 17 records\n$/);
  });

  test('a flipped byte is corruption at that record, and the records after it are still shown (exit 2)', async () => {
    const buf = Buffer.from(fs.readFileSync(newSeg));
    const before = dumpSegment(buf).entries;
    const victim = before[3]!;
    buf[victim.offset + 12] = buf[victim.offset + 12]! ^ 0x01;
    const path = join(f.dir, 'flipped.seg');
    fs.writeFileSync(path, buf);
    const { code, entries } = await dumpJson(path);
    assert.equal(code, 2);
    const bad = entries.find((e) => e.type === 'corruption')!;
    assert.equal(bad.offset, victim.offset);
    assert.equal(bad.length, victim.length);
    assert.match(String(bad.reason), /checksum mismatch; next valid record at/);
    assert.equal(entries.length, before.length, 'every other record is still listed');
  });

  test('a record cut short at the end is a torn tail (exit 1)', async () => {
    const buf = fs.readFileSync(newSeg);
    const all = dumpSegment(buf).entries;
    const last = all.at(-1)!;
    const path = join(f.dir, 'torn.seg');
    fs.writeFileSync(path, buf.subarray(0, last.offset + 5));
    const { code, entries } = await dumpJson(path);
    assert.equal(code, 1);
    assert.deepEqual(entries.at(-1), {
      offset: last.offset,
      length: 5,
      type: 'torn-tail',
      reason: 'incomplete record',
    });
  });

  test('a segment that does not start with a header is corruption', () => {
    const buf = fs.readFileSync(newSeg);
    const first = dumpSegment(buf).entries[1]!;
    const r = dumpSegment(buf.subarray(first.offset));
    assert.ok(r.corruptions > 0);
    assert.equal(r.entries[0]!.reason, 'missing segment header');
  });

  test('a missing file exits 66; no argument or an unknown option exits 64', async () => {
    const c = captureIo();
    assert.equal(await run([join(f.dir, 'nope.seg')], c.io), 66);
    assert.equal(await run([f.dir], c.io), 66);
    assert.equal(await run([], c.io), 64);
    assert.equal(await run(['--bogus', newSeg], c.io), 64);
  });
});
