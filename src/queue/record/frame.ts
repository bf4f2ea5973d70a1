// Record framing: `length u32 LE | masked crc32c u32 LE | type u8 | body`. The CRC covers the
// type byte and the body. Pure functions, no fs. A reader distinguishes three outcomes at an
// offset: a whole valid record, "incomplete or invalid" (the caller decides whether that is a
// torn tail or corruption), and a zero header (end of written data in a preallocated file).
import { crc32cAfter, crc32cOf, maskCrc, unmaskCrc } from './crc.js';

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

/** Reads the record starting at `off` in `buf` (which ends at the end of the available data). */
export function readFrame(buf: Buffer, off: number, validTypes: (t: number) => boolean): FrameResult {
  if (buf.length - off < FRAME_HEADER) {
    for (let i = off; i < buf.length; i++) if (buf[i] !== 0) return { kind: 'short' };
    return buf.length === off ? { kind: 'short' } : { kind: 'zero' };
  }
  const len = buf.readUInt32LE(off);
  const crc = buf.readUInt32LE(off + 4);
  const type = buf[off + 8]!;
  if (len === 0 && crc === 0 && type === 0) return { kind: 'zero' };
  if (!validTypes(type)) return { kind: 'bad', reason: `unknown record type ${type}` };
  if (len > MAX_BODY) return { kind: 'bad', reason: `record length ${len} too large` };
  const end = off + FRAME_HEADER + len;
  if (end > buf.length) return { kind: 'short' };
  // The CRC covers the type byte and the body: the type byte's CRC comes from a table, so that
  // one view of the body serves both the check and the caller (recovery reads millions).
  const body = buf.subarray(off + FRAME_HEADER, end);
  if (crc32cAfter(CRC_OF_BYTE[type]!, body) !== unmaskCrc(crc))
    return { kind: 'bad', reason: 'checksum mismatch' };
  return { kind: 'record', type, body, next: end };
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
