// The JS parts of record/crc.ts agree with the native CRC32C over random bytes: continuing
// over a few bytes, and combining the CRCs of two adjacent ranges of any length.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { crc32cAfter, crc32cBytes, crc32cCombine, crc32cOf, crc32cShift } from './crc.js';

test('crc32cBytes continues a CRC as the native code does', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 64 }), (a, b) => {
      const start = crc32cOf([a]);
      assert.equal(crc32cBytes(start, b, 0, b.length), crc32cAfter(start, b));
    }),
  );
});

test('crc32cCombine gives the CRC of the concatenation', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 5000 }), (a, b) => {
      assert.equal(crc32cCombine(crc32cOf([a]), crc32cOf([b]), b.length), crc32cOf([a, b]));
    }),
  );
});

test('crc32cShift handles lengths with high bits set (megabyte records)', () => {
  for (const n of [1 << 20, (1 << 20) + 4097, 3 * (1 << 20) + 9]) {
    const a = randomBytes(17);
    const b = randomBytes(n);
    assert.equal(crc32cCombine(crc32cOf([a]), crc32cOf([b]), n), crc32cOf([a, b]));
  }
  assert.equal(crc32cShift(0x12345678, 0), 0x12345678);
});
