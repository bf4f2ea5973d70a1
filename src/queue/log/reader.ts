// Reads one segment's bytes into records. Pure: takes the file's bytes, returns what it found.
// Outcomes, by failure mode (see docs/queue-states.md):
// - clean end, or a zero-filled tail (extended or preallocated space, zeros to the end of the
//   file): end of log, not damage (recovery still cuts it off the newest segment before it
//   appends, so that nothing it did not validate is left after the new end);
// - no header and no valid record anywhere (a partly written header): a torn header, i.e. a
//   segment whose creation a crash cut short; it holds nothing. Zeros alone (a reused spare
//   file whose header was never written) hold nothing either, and count as a zero-filled tail;
// - an incomplete or invalid record with no valid record after it, in the newest segment of
//   a lane: a torn tail from a crash mid-write, to be cut off. Zeros followed by other bytes
//   that hold no valid record are one too: a torn write whose later part reached the disk
//   and whose earlier part did not (a hole, then stale record bytes);
// - anything else invalid (any bad record in an older segment, or a bad record followed by
//   a valid one): corruption, reported with the byte offset; the caller sets the segment aside.
// CRCs are checked a span of frames at a time (record/frame.ts checkFrames), frame by frame only
// in a span that fails, so the outcomes are those of a frame-by-frame read.
import {
  checkFrames,
  FRAME_RECORD,
  FRAME_SHORT,
  FRAME_ZERO,
  frameSlot,
  readFrameAt,
  skipZeros,
  validFrameAfter,
} from '../record/frame.js';
import { decodeHeader, isRecordType, RT_HEADER, type SegmentHeader } from '../record/records.js';

export interface ScannedRecord {
  type: number;
  body: Buffer;
  /** Offset of the record's frame in the segment. */
  offset: number;
  /** Length of the whole frame. */
  length: number;
}

export interface SegmentScan {
  header: SegmentHeader | undefined;
  /** Offset just past the last valid record. */
  end: number;
  /** The segment ends in zeros after `end` (preallocated space): the end of the log, not damage. */
  zeroTail?: boolean;
  /** Set when the segment ends in a torn record that recovery should cut off. */
  tornAt?: number;
  /** Set when the segment is corrupt; records before `offset` were valid. */
  corruption?: { offset: number; reason: string };
  records: number;
}

/**
 * Scans `buf`, calling `onRecord` for each valid record after the header. `newest` says whether
 * this is the last segment of its lane (the only place a torn tail is legitimate). The record
 * passed to `onRecord` is one object reused for every record: copy what is kept.
 */
export function scanSegment(buf: Buffer, newest: boolean, onRecord: (r: ScannedRecord) => void): SegmentScan {
  let off = 0;
  let header: SegmentHeader | undefined;
  let count = 0;
  const r = frameSlot();
  const rec: ScannedRecord = { type: 0, body: r.body, offset: 0, length: 0 };
  // Frames before `checkedTo` passed a span check; before `spanFrom`, a span failed or could
  // not be formed, and frames are checked one by one.
  let checkedTo = 0;
  let spanFrom = 0;
  while (off < buf.length) {
    if (off >= checkedTo && off >= spanFrom) {
      const span = checkFrames(buf, off, isRecordType);
      if (span.intact) checkedTo = span.end;
      else spanFrom = Math.max(span.end, off + 1);
    }
    const kind = readFrameAt(buf, off, isRecordType, off < checkedTo, r);
    if (kind === FRAME_RECORD) {
      if (off === 0) {
        if (r.type !== RT_HEADER)
          return { header, end: 0, corruption: { offset: 0, reason: 'missing segment header' }, records: 0 };
        try {
          header = decodeHeader(r.body);
        } catch {
          return {
            header,
            end: 0,
            corruption: { offset: 0, reason: 'unreadable segment header' },
            records: 0,
          };
        }
      } else {
        rec.type = r.type;
        rec.body = r.body;
        rec.offset = off;
        rec.length = r.next - off;
        onRecord(rec);
        count++;
      }
      off = r.next;
      continue;
    }
    if (off === 0 && validFrameAfter(buf, 1, isRecordType) < 0) {
      // Zeros alone, no header: a spare file (spares.ts) renamed into place whose header a
      // crash kept from being written. Nothing was ever written there, as in an empty file: not
      // damage, but its zeros are cut like any zero-filled tail, and it holds no record.
      if (skipZeros(buf, 0) === buf.length) return { header, end: 0, zeroTail: true, records: 0 };
      // No header and nothing valid after it: a segment whose creation was cut short (torn
      // header). It holds no record, wherever it is in the lane (the writer moves past such a
      // segment after recovery, so it need not be the newest).
      return { header, end: 0, tornAt: 0, records: 0 };
    }
    if (kind === FRAME_ZERO) {
      // Preallocated or zero-extended space: the end of what was written. Anything valid after
      // it would mean lost records in between.
      const later = validFrameAfter(buf, off + 1, isRecordType);
      if (later >= 0)
        return {
          header,
          end: off,
          corruption: { offset: off, reason: `zero bytes before a valid record at ${later}` },
          records: count,
        };
      // Zeros then other bytes, in the newest segment: a torn write whose earlier part never
      // reached the disk. The bytes after the hole were never validated: cut them all.
      if (newest && skipZeros(buf, off) < buf.length)
        return { header, end: off, tornAt: off, records: count };
      // Zeros alone are not a torn record: they are space the file system extended but never
      // wrote (or preallocated space). The log ends at `end`.
      return { header, end: off, zeroTail: true, records: count };
    }
    const reason = kind === FRAME_SHORT ? 'incomplete record' : r.reason;
    const later = validFrameAfter(buf, off + 1, isRecordType);
    if (newest && later < 0) return { header, end: off, tornAt: off, records: count };
    return {
      header,
      end: off,
      corruption: {
        offset: off,
        reason: later >= 0 ? `${reason} (valid record follows at ${later})` : reason,
      },
      records: count,
    };
  }
  return { header, end: off, records: count };
}
