// Record framing: `length u32 LE | masked crc32c u32 LE | type u8 | body`. The CRC covers the
// type byte and the body. Pure functions, no fs. A reader distinguishes three outcomes at an
// offset: a whole valid record, "incomplete or invalid" (the caller decides whether that is a
// torn tail or corruption), and a zero header (end of written data in a preallocated file).
import { crc32cAfter, crc32cBytes, crc32cCombine, crc32cOf, maskCrc, unmaskCrc } from './crc.js';

export const FRAME_HEADER = 9;
/** CRC32C of each single byte value: the start of a record's CRC, after its type byte. */
const CRC_OF_BYTE = Array.from({ length: 256 }, (_, b) => crc32cOf([Uint8Array.of(b)]));
/**
 * Largest body a record may have. Message data streamed in (data/spool.ts) is written as chunk
 * records of CHUNK_SIZE (1 MiB); a message accepted whole is one data record, and limits.ts caps
 * a message well below this.
 */
export const MAX_BODY = 512 * 1024 * 1024;

/** Encodes one record; `body` may be given in several parts to avoid copying message data. */
export function encodeFrame(type: number, body: readonly Uint8Array[]): Buffer[] {
  let len = 0;
  for (const b of body) len += b.length;
  if (len > MAX_BODY) throw new RangeError(`record body of ${len} bytes exceeds ${MAX_BODY}`);
  const head = Buffer.allocUnsafe(FRAME_HEADER);
  head[8] = type;
  head.writeUInt32LE(len, 0);
  let crc = CRC_OF_BYTE[type & 255]!;
  const out: Buffer[] = [head];
  for (const b of body) {
    crc = crc32cAfter(crc, b);
    out.push(b as Buffer);
  }
  head.writeUInt32LE(maskCrc(crc), 4);
  return out;
}

export type FrameResult =
  | { kind: 'record'; type: number; body: Buffer; next: number }
  | { kind: 'zero' }
  | { kind: 'short' }
  | { kind: 'bad'; reason: string };

/** What readFrameAt found at an offset. */
export const FRAME_RECORD = 0;
export const FRAME_ZERO = 1;
export const FRAME_SHORT = 2;
export const FRAME_BAD = 3;

/** Where readFrameAt puts what it read (one slot reused for millions of records). */
export interface FrameSlot {
  type: number;
  body: Buffer;
  next: number;
  /** Why the frame is bad (FRAME_BAD only). */
  reason: string;
}

export function frameSlot(): FrameSlot {
  return { type: 0, body: Buffer.alloc(0), next: 0, reason: '' };
}

/**
 * Reads the record starting at `off` in `buf` (which ends at the end of the available data)
 * into `out`; returns FRAME_RECORD and the rest. `checked` says that a span check already
 * vouched for the frame's CRC (checkFrames), so only its structure is read.
 */
export function readFrameAt(
  buf: Buffer,
  off: number,
  validTypes: (t: number) => boolean,
  checked: boolean,
  out: FrameSlot,
): number {
  if (buf.length - off < FRAME_HEADER) {
    for (let i = off; i < buf.length; i++) if (buf[i] !== 0) return FRAME_SHORT;
    return buf.length === off ? FRAME_SHORT : FRAME_ZERO;
  }
  const len = buf.readUInt32LE(off);
  const crc = buf.readUInt32LE(off + 4);
  const type = buf[off + 8]!;
  if (len === 0 && crc === 0 && type === 0) return FRAME_ZERO;
  if (!validTypes(type)) return frameFault(out, `unknown record type ${type}`);
  if (len > MAX_BODY) return frameFault(out, `record length ${len} too large`);
  const end = off + FRAME_HEADER + len;
  if (end > buf.length) return FRAME_SHORT;
  // The CRC covers the type byte and the body: the type byte's CRC comes from a table, so that
  // one view of the body serves both the check and the caller (recovery reads millions).
  const body = buf.subarray(off + FRAME_HEADER, end);
  if (!checked && crc32cAfter(CRC_OF_BYTE[type]!, body) !== unmaskCrc(crc))
    return frameFault(out, 'checksum mismatch');
  out.type = type;
  out.body = body;
  out.next = end;
  return FRAME_RECORD;
}

function frameFault(out: FrameSlot, reason: string): number {
  out.reason = reason;
  return FRAME_BAD;
}

/** Reads the record starting at `off` in `buf` (which ends at the end of the available data). */
export function readFrame(buf: Buffer, off: number, validTypes: (t: number) => boolean): FrameResult {
  const out = frameSlot();
  switch (readFrameAt(buf, off, validTypes, false, out)) {
    case FRAME_RECORD:
      return { kind: 'record', type: out.type, body: out.body, next: out.next };
    case FRAME_ZERO:
      return { kind: 'zero' };
    case FRAME_SHORT:
      return { kind: 'short' };
    default:
      return { kind: 'bad', reason: out.reason };
  }
}

/** Bytes of frames that checkFrames covers with one CRC, at most (plus the frame that crosses it). */
export const SPAN_BYTES = 256 * 1024;

/** What checkFrames found: the span's end, and whether every frame wholly in it is intact. */
export interface SpanCheck {
  end: number;
  intact: boolean;
}

/**
 * Checks the CRCs of the whole frames from `off` on, up to about `maxBytes`, with one native CRC
 * over their bytes instead of one call per frame: the CRC the span must have if every frame is
 * intact follows from each frame's header bytes and stored CRC (crc32cCombine), so one compare
 * vouches for them all. A mismatch says only that some frame in the span is damaged: the caller
 * then checks those frames one by one. The walk stops at the first frame that is not whole
 * (zeros, an unknown type, a length past the data): the frame-by-frame read judges that one.
 * Two damaged frames whose errors cancel in the combined CRC pass unseen with the odds of one
 * damaged frame matching its CRC (2^-32).
 */
export function checkFrames(
  buf: Buffer,
  off: number,
  validTypes: (t: number) => boolean,
  maxBytes = SPAN_BYTES,
): SpanCheck {
  let s = off;
  let expect = 0;
  while (s + FRAME_HEADER <= buf.length && s - off < maxBytes) {
    const len = buf.readUInt32LE(s);
    const crc = buf.readUInt32LE(s + 4);
    const type = buf[s + 8]!;
    if (type === 0 || !validTypes(type) || len > MAX_BODY || s + FRAME_HEADER + len > buf.length) break;
    // The span's CRC so far, then this frame's 8 length and CRC bytes, then its type and body,
    // whose CRC the frame stores.
    expect = crc32cBytes(expect, buf, s, s + 8);
    expect = crc32cCombine(expect, unmaskCrc(crc), len + 1);
    s += FRAME_HEADER + len;
  }
  if (s === off) return { end: off, intact: false };
  return { end: s, intact: crc32cAfter(0, buf.subarray(off, s)) === expect };
}

/** True if some valid record starts anywhere in buf after `from`: used to tell corruption from a torn tail. */
const ZEROS = Buffer.alloc(65536);

/** The first index >= `from` whose byte is not zero (buf.length if none), at memcmp speed. */
export function skipZeros(buf: Buffer, from: number): number {
  let i = from;
  for (const step of [65536, 4096, 256, 16]) {
    while (i + step <= buf.length && buf.compare(ZEROS, 0, step, i, i + step) === 0) i += step;
  }
  while (i < buf.length && buf[i] === 0) i++;
  return i;
}

export function validFrameAfter(buf: Buffer, from: number, validTypes: (t: number) => boolean): number {
  for (let i = from; i + FRAME_HEADER <= buf.length; i++) {
    const t = buf[i + 8]!;
    if (t === 0) {
      // Zero-filled space can be megabytes long: jump over it. A record's type byte is never
      // zero, so the next candidate has its type byte at the next non-zero byte.
      i = Math.max(i, skipZeros(buf, i + 8) - 8 - 1);
      continue;
    }
    if (!validTypes(t)) continue;
    const len = buf.readUInt32LE(i);
    if (len > MAX_BODY || i + FRAME_HEADER + len > buf.length) continue;
    const r = readFrame(buf, i, validTypes);
    if (r.kind === 'record') return i;
  }
  return -1;
}
