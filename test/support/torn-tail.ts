// What a torn tail that recovery finds after a power cut is made of, for the power-loss harness
// (power-loss.ts): the prefix of a write that was cut short, or stale bytes. Test support only.
// A cut that tears no write can still leave the first part of a batch. Several batches are in
// flight, two of them to one segment, and the sync of one makes durable what had already reached
// the page cache of the other. Such a tail is our own record, cut short: a plausible frame header
// at the cut (or part of one), whose record runs past the last non-zero byte of the file. After
// it come only zeros, or the end of the file. Stale bytes, which recovery must never leave after
// the end it appended at (the bug this guards against), are other data. Their "record" at the cut
// is garbage, or it ends inside more non-zero bytes.
import { FRAME_HEADER, MAX_BODY } from '../../src/queue/record/frame.js';
import { isRecordType } from '../../src/queue/record/records.js';

/** The index just past the last non-zero byte of `b` (0 when it holds only zeros). */
export function dataEnd(b: Buffer): number {
  let last = b.length - 1;
  while (last >= 0 && b[last] === 0) last--;
  return last + 1;
}

/** Whether the torn tail at `cut` in the segment bytes `b` is the cut-short prefix of a write. */
export function isCutShortWrite(b: Buffer, cut: number): boolean {
  const end = dataEnd(b);
  if (end <= cut) return false; // zeros only: not a torn tail at all
  if (end - cut < FRAME_HEADER) return true; // the header itself cut short, zeros after
  const len = b.readUInt32LE(cut);
  return isRecordType(b[cut + 8]!) && len <= MAX_BODY && cut + FRAME_HEADER + len > end;
}
