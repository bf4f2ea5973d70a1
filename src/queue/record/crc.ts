// CRC32C (Castagnoli) of record bytes, masked as LevelDB does so that a CRC stored inside
// data that is itself checksummed does not produce a degenerate value. Uses the SSE4.2/SIMD
// implementation of @node-rs/crc32 for bulk bytes; for the few header bytes of a frame and for
// combining the CRCs of adjacent byte ranges (recovery checks a span of frames with one native
// call, record/frame.ts checkFrames) it computes in JS: a byte table, and the GF(2) operator
// that appends n zero bytes to a CRC, applied with tables built per power of two on first use.
// The functions are pure.
import { crc32c } from '@node-rs/crc32';

const MASK_DELTA = 0xa282ead8;
/** The CRC32C polynomial, bit-reflected. */
const POLY = 0x82f63b78;

/** CRC32C over the concatenation of the given buffers. */
export function crc32cOf(parts: readonly Uint8Array[]): number {
  let c = 0;
  for (const p of parts) c = crc32c(p as Buffer, c);
  return c >>> 0;
}

/** Continues a CRC32C over one more buffer. */
export function crc32cAfter(crc: number, part: Uint8Array): number {
  return crc32c(part as Buffer, crc) >>> 0;
}

export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

export function unmaskCrc(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}

const BYTE_TABLE = new Int32Array(256);
for (let b = 0; b < 256; b++) {
  let c = b;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  BYTE_TABLE[b] = c;
}

/** Continues a CRC32C over `buf[from, to)`, in JS: for a few bytes, cheaper than a native call. */
export function crc32cBytes(crc: number, buf: Uint8Array, from: number, to: number): number {
  let c = ~crc;
  for (let i = from; i < to; i++) c = BYTE_TABLE[(c ^ buf[i]!) & 255]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** a × b modulo the polynomial, both bit-reflected (bit 31 is x⁰). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo the polynomial, for k up to 34 (a shift of 2^31 bytes is 2^34 bits). */
const X2N = new Array<number>(35);
X2N[0] = 0x40000000;
for (let k = 1; k < X2N.length; k++) X2N[k] = multModP(X2N[k - 1]!, X2N[k - 1]!);

/** Per k, the operator "append 2^k zero bytes" as four byte tables (built on first use). */
const SHIFT_TABLES: Array<Int32Array | undefined> = [];

function shiftTable(k: number): Int32Array {
  let t = SHIFT_TABLES[k];
  if (t !== undefined) return t;
  const op = X2N[k + 3]!; // 2^k bytes are 2^(k+3) bits
  t = new Int32Array(1024);
  for (let j = 0; j < 4; j++)
    for (let b = 1; b < 256; b++) {
      const low = b & -b;
      t[j * 256 + b] = t[j * 256 + (b ^ low)]! ^ multModP(op, (low << (8 * j)) >>> 0);
    }
  SHIFT_TABLES[k] = t;
  return t;
}

/**
 * The CRC of a byte range followed by `n` more bytes is crc32cShift(crc of the range, n) XOR the
 * CRC of those n bytes (crc32cCombine). `n` is below 2^31.
 */
export function crc32cShift(crc: number, n: number): number {
  let c = crc;
  for (let k = 0; n > 0; k++, n >>>= 1) {
    if ((n & 1) === 0) continue;
    const t = shiftTable(k);
    c = t[c & 255]! ^ t[256 + ((c >>> 8) & 255)]! ^ t[512 + ((c >>> 16) & 255)]! ^ t[768 + (c >>> 24)]!;
  }
  return c >>> 0;
}

/** CRC32C of A followed by B, from the CRC of A, the CRC of B and B's length. */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  return (crc32cShift(crcA, lengthB) ^ crcB) >>> 0;
}
