// What recovery keeps of one lane's segment files, segment by segment: which segments count as
// the newest (where a torn tail is a crash leftover, not corruption), where each one is cut,
// which gaps in the sequence are missing segments, and which copy of a message's data is the
// one kept (keepsCopy, chunkStep). Recovery (recovery.ts, core.ts), which acts on these answers,
// and the read-only check behind `logmta log verify` (verify.ts), which only reports them, both
// take them from here, so the two can never disagree about a directory.
// Invariant: reads only, through the `read` callback; the caller does any cutting.
// Fails: whatever `read` rejects with.
import { FRAME_RECORD, frameSlot, readFrameAt } from '../record/frame.js';
import { isRecordType, RT_HEADER } from '../record/records.js';
import { type SegmentScan, scanSegment } from './reader.js';
import { segmentName } from './segment.js';

export interface LaneSegment {
  seq: number;
  buf: Buffer;
  /**
   * At or after the lane's last segment that holds a record (or is corrupt). The writer creates
   * the next segment ahead of need, so a crash can leave header-only segments after one whose
   * last record is torn: all of them may end torn.
   */
  newest: boolean;
}

/** Bytes of a segment's beginning that `peek` is asked for. */
export const PEEK_BYTES = 64 * 1024;

/**
 * The segments of one lane in log order (`seqs` ascending), each with its bytes and whether it
 * counts as the newest. Reads each file once, but for `peek`: given, it reads the first bytes
 * (up to PEEK_BYTES) of the last segments, and a segment whose header and first record are
 * whole and valid there is known to be the newest without its bytes being held until its turn
 * (a data lane's newest segment is tens of megabytes).
 */
export async function* laneSegments(
  seqs: readonly number[],
  read: (seq: number) => Promise<Buffer>,
  peek?: (seq: number) => Promise<Buffer>,
): AsyncGenerator<LaneSegment> {
  const bufs = new Map<number, Buffer>();
  let newestIdx = seqs.length - 1;
  while (newestIdx > 0) {
    if (peek && startsWithRecord(await peek(seqs[newestIdx]!))) break;
    const b = await read(seqs[newestIdx]!);
    bufs.set(newestIdx, b);
    if (holdsRecordOrDamage(b)) break;
    newestIdx--;
  }
  for (let i = 0; i < seqs.length; i++) {
    const buf = bufs.get(i) ?? (await read(seqs[i]!));
    bufs.delete(i);
    yield { seq: seqs[i]!, buf, newest: i >= newestIdx };
  }
}

/** Whether `buf` (a segment, or its first bytes) begins with a header and a valid record after it. */
function startsWithRecord(buf: Buffer): boolean {
  const f = frameSlot();
  return (
    readFrameAt(buf, 0, isRecordType, false, f) === FRAME_RECORD &&
    f.type === RT_HEADER &&
    readFrameAt(buf, f.next, isRecordType, false, f) === FRAME_RECORD
  );
}

/**
 * Whether a scan of `buf` would find a record after the header, or corruption. A header
 * followed by a valid record answers at once (the usual newest segment, however large);
 * anything else is scanned whole.
 */
function holdsRecordOrDamage(buf: Buffer): boolean {
  if (startsWithRecord(buf)) return true;
  const s = scanSegment(buf, true, () => {});
  return s.records > 0 || s.corruption !== undefined;
}

/** Where recovery cuts a scanned segment of `length` bytes; undefined when it keeps it whole. */
export interface SegmentCut {
  at: number;
  /**
   * A torn tail or torn header (reported as such). Otherwise the cut only removes a zero-filled
   * tail of a newest segment, which is not damage: it is cut so that appends never leave bytes
   * recovery did not validate after the new end of the log.
   */
  torn: boolean;
}

export function segmentCut(scan: SegmentScan, length: number, newest: boolean): SegmentCut | undefined {
  if (scan.tornAt !== undefined) return scan.tornAt < length ? { at: scan.tornAt, torn: true } : undefined;
  if (newest && scan.zeroTail && !scan.corruption && scan.end < length) return { at: scan.end, torn: false };
  return undefined;
}

/**
 * Gaps in the sequence numbers of a lane (every lane but `data`, whose segments are freed out
 * of order), as "lane/0000000007.seg". A segment set aside under quarantine/ leaves an
 * expected gap and is not reported.
 */
export function missingSegments(
  lane: string,
  seqs: readonly number[],
  quarantined: readonly string[],
): string[] {
  if (lane === 'data') return [];
  const out: string[] = [];
  for (let i = 1; i < seqs.length; i++)
    for (let s = seqs[i - 1]! + 1; s < seqs[i]!; s++)
      if (!quarantined.some((n) => n.startsWith(`${lane}-${segmentName(s)}`)))
        out.push(`${lane}/${segmentName(s)}`);
  return out;
}

/**
 * Whether a complete copy of a message's data seen in lane number `lane` (in scan order: lanes
 * one after the other, segments in log order) replaces the copy kept so far, in `curLane`
 * (undefined: none yet). Recovery keeps the copy in the data lane, else the later copy in the
 * same lane.
 */
export function keepsCopy(
  curLane: number | undefined,
  curInData: boolean,
  lane: number,
  inData: boolean,
): boolean {
  return curLane === undefined || (inData && !curInData) || lane === curLane;
}

/**
 * What a chunk record at byte `offset` of a message's data does, given the copy in progress
 * (`partialLane`, undefined for none, and `partialNext`, the next offset it expects): offset 0 starts a copy, the next offset in the
 * same lane extends it, anything else is a remnant of a copy whose other chunks are gone (an
 * abandoned stream, a freed segment) and is ignored. Every copy holds the same bytes, so only
 * the offsets matter.
 */
export function chunkStep(
  partialLane: number | undefined,
  partialNext: number,
  lane: number,
  offset: number,
): 'start' | 'extend' | 'remnant' {
  if (offset === 0) return 'start';
  return partialLane === lane && partialNext === offset ? 'extend' : 'remnant';
}
