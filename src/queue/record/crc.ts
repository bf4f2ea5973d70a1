// CRC32C (Castagnoli) of record bytes, masked as LevelDB does so that a CRC stored inside
// data that is itself checksummed does not produce a degenerate value. Uses the SSE4.2/SIMD
// implementation of @node-rs/crc32; the function is pure.
import { crc32c } from '@node-rs/crc32';

const MASK_DELTA = 0xa282ead8;

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
