// The power-loss harness's reading of a torn tail (torn-tail.ts), on segment bytes made here.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeFrame } from '../../src/queue/record/frame.js';
import { RT_DATA } from '../../src/queue/record/records.js';
import { dataEnd, isCutShortWrite } from './torn-tail.js';

const frame = (n: number, fill: number) => Buffer.concat(encodeFrame(RT_DATA, [Buffer.alloc(n, fill)]));

test('the first part of a write, then zeros or the end of the file, is a cut-short write', () => {
  const whole = frame(100, 0x41);
  const next = frame(5000, 0x42);
  const at = whole.length;
  // A reused (zeroed) segment: the next record's first 1,000 bytes reached the disk.
  const zeroed = Buffer.alloc(16384);
  whole.copy(zeroed, 0);
  next.copy(zeroed, at, 0, 1000);
  assert.equal(dataEnd(zeroed), at + 1000);
  assert.equal(isCutShortWrite(zeroed, at), true);
  // An extended file that ends where the write was cut.
  assert.equal(isCutShortWrite(Buffer.concat([whole, next.subarray(0, 1000)]), at), true);
  // Only part of the header.
  assert.equal(isCutShortWrite(Buffer.concat([whole, next.subarray(0, 5), Buffer.alloc(100)]), at), true);
});

test('stale bytes after the end are not: garbage at the cut, or a record that ends inside more data', () => {
  const whole = frame(100, 0x41);
  const at = whole.length;
  // Bytes of another life: text where a header should be.
  const text = Buffer.from('Received: from somewhere\r\n'.repeat(40));
  assert.equal(isCutShortWrite(Buffer.concat([whole, text]), at), false);
  // A plausible header whose record ends before more non-zero bytes (old records after it).
  const old = frame(50, 0x43);
  old[20] = old[20]! ^ 1; // its checksum no longer holds: the torn tail recovery found
  assert.equal(isCutShortWrite(Buffer.concat([whole, old, frame(300, 0x44)]), at), false);
  // Zeros alone after the cut are no torn tail.
  assert.equal(isCutShortWrite(Buffer.concat([whole, Buffer.alloc(64)]), at), false);
});
