// The largest values the queue's on-disk format can hold, in one place so that the configuration
// validator refuses what the queue could not store (src/config/sections.ts) instead of letting
// it wrap or fail on every attempt.
// - Record offsets and lengths are u32 in the index (state/tables.ts) and a record may start
//   anywhere below the segment size: a segment of at most 1 GiB keeps every offset far below 2^32.
// - A record body is at most MAX_BODY (512 MiB, record/frame.ts); a message's data is stored
//   with the headers we add and, on the control socket, as one base64 line: 256 MiB of message
//   leaves room for both.
import { MAX_BODY } from './record/frame.js';

export const MAX_SEGMENT_SIZE = 1024 ** 3;
export const MAX_MESSAGE_SIZE = Math.min(256 * 1024 ** 2, MAX_BODY / 2);
