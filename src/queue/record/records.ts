// Record types of the queue log and their body codecs. Pure: bytes in, values out.
// Every envelope-like record starts with a fixed binary prefix (message id, piece, version,
// times, recipient count) so recovery can rebuild the index without parsing the JSON tail;
// only the runner and inspection decode the tail. See docs/queue-format.md.

export const RT_HEADER = 1;
export const RT_DATA = 2;
export const RT_ENVELOPE = 3;
export const RT_DELTA = 4;
export const RT_DONE = 5;
/** A piece of a message's data written while it was still arriving (format 2). */
export const RT_CHUNK = 6;

export function isRecordType(t: number): boolean {
  return t >= RT_HEADER && t <= RT_CHUNK;
}

/** Format written by this code. Format 1 (no chunk records) is read as well. */
export const FORMAT_VERSION = 2;

/** True for every segment format this code reads. */
export function knownFormat(f: number): boolean {
  return f === 1 || f === 2;
}

export interface SegmentHeader {
  format: number;
  lane: string;
  seq: number;
  created: number;
}

export interface RecipientInfo {
  address: string;
  /** DSN NOTIFY values as given (e.g. ["SUCCESS","FAILURE"] or ["NEVER"]); absent = default. */
  notify?: string[];
  /** DSN ORCPT as given ("rfc822;user@example"). */
  orcpt?: string;
  /** Last reply or error seen for this recipient. */
  last?: string;
}

export interface HistoryEntry {
  t: number;
  ev: string;
  detail?: string;
}

export interface EnvelopeInfo {
  sender: string;
  recipients: RecipientInfo[];
  ret?: 'FULL' | 'HDRS';
  envid?: string;
  /** Size of the message data in bytes. */
  size: number;
  smtputf8?: boolean;
  body?: string;
  attempts: number;
  /** Facts about the client that submitted the message, for logs and inspection. */
  client?: Record<string, string>;
  lastError?: string;
  /** A delay warning has been sent. */
  warned?: boolean;
  /** This message is a delivery report: never bounce it. */
  report?: boolean;
  history: HistoryEntry[];
}

/** The fixed binary prefix of an envelope record: all that recovery decodes. */
export interface EnvelopeHead {
  msgId: number;
  piece: number;
  version: number;
  /** When the envelope becomes due for delivery (ms since epoch). */
  due: number;
  /** When the message was accepted (ms since epoch). */
  arrival: number;
  rcptCount: number;
}

export interface EnvelopeRecord extends EnvelopeHead {
  info: EnvelopeInfo;
}

export const OUTCOME_DELIVERED = 1;
export const OUTCOME_FAILED = 2;

export interface DeltaRecord {
  msgId: number;
  piece: number;
  version: number;
  rcpt: number;
  outcome: number;
  detail: { code?: number; enhanced?: string; text?: string; host?: string; t: number };
}

export const DONE_COMPLETED = 1;
export const DONE_MOVED = 2;
export const DONE_DELETED = 3;
export const DONE_REPAIR = 4;

export interface DoneRecord {
  msgId: number;
  piece: number;
  version: number;
  reason: number;
}

const ENV_PREFIX = 8 + 2 + 4 + 8 + 8 + 2;

/**
 * Envelope flag: a delay warning is pending — some recipient of this version wants one (the
 * report policy's answer) and none was sent — so a held piece keeps a deadline for it
 * (expire.ts). Recovery reads it without decoding the JSON.
 */
export const ENV_WARN_PENDING = 1;
/**
 * Not a flag but the lack of one: the envelope has no flag byte, as every envelope an older logmta
 * wrote (c2600f6 and before). Its flags are unknown; whether a warning is pending is in its JSON
 * only, which recovery judges from the bytes (envelopeSaysWarned, ReportHooks.mayWantDelay).
 */
export const ENV_UNFLAGGED = 2;
/**
 * How the flags are written: the byte after the prefix is a JSON whitespace byte that names the
 * flags — space: none, TAB: warning pending — with the JSON after it; an older logmta wrote none,
 * its JSON's `{` comes right there. Any JSON reader takes the whitespace as whitespace, so
 * envelopes with and without the byte are read alike (docs/queue-format.md).
 */
const FLAG_BYTE_NONE = 0x20;
const FLAG_BYTE_WARN_PENDING = 0x09;
/** The JSON's first byte: where it sits right after the prefix, the envelope has no flag byte. */
const JSON_OPEN = 0x7b;
/** What a warned envelope's JSON holds, and no other (JSON.stringify writes no spaces). */
const WARNED_JSON = Buffer.from('"warned":true');
const DELTA_PREFIX = 8 + 2 + 4 + 2 + 1;
const DONE_SIZE = 8 + 2 + 4 + 1;

export function encodeHeader(h: SegmentHeader): Buffer {
  return Buffer.from(JSON.stringify(h));
}

export function decodeHeader(b: Buffer): SegmentHeader {
  return JSON.parse(b.toString('utf8')) as SegmentHeader;
}

/** The 8-byte prefix of a data record; the message bytes follow it in the same record. */
export function encodeDataPrefix(msgId: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeDoubleLE(msgId, 0);
  return b;
}

export const DATA_PREFIX = 8;

export function decodeDataId(body: Buffer): number {
  return body.readDoubleLE(0);
}

/**
 * A chunk record's prefix: `msgId f64 | offset f64 | flags u8`, then the bytes. `offset` is where
 * the bytes sit in the message data; CHUNK_LAST marks the chunk that ends it. A message's data is
 * complete when chunks of one lane cover [0, end) back to back, the last one flagged.
 */
export const CHUNK_PREFIX = 17;
export const CHUNK_LAST = 1;

export interface ChunkHead {
  msgId: number;
  offset: number;
  last: boolean;
}

export function encodeChunkPrefix(msgId: number, offset: number, last: boolean): Buffer {
  const b = Buffer.allocUnsafe(CHUNK_PREFIX);
  b.writeDoubleLE(msgId, 0);
  b.writeDoubleLE(offset, 8);
  b[16] = last ? CHUNK_LAST : 0;
  return b;
}

export function decodeChunkHead(body: Buffer): ChunkHead {
  if (body.length < CHUNK_PREFIX) throw new RangeError('chunk record too short');
  return { msgId: body.readDoubleLE(0), offset: body.readDoubleLE(8), last: (body[16]! & CHUNK_LAST) !== 0 };
}

export function encodeEnvelope(e: EnvelopeRecord, flags = 0): Buffer {
  const json = JSON.stringify(e.info);
  const b = Buffer.allocUnsafe(ENV_PREFIX + 1 + Buffer.byteLength(json));
  b.writeDoubleLE(e.msgId, 0);
  b.writeUInt16LE(e.piece, 8);
  b.writeUInt32LE(e.version, 10);
  b.writeDoubleLE(e.due, 14);
  b.writeDoubleLE(e.arrival, 22);
  b.writeUInt16LE(e.rcptCount, 30);
  b[ENV_PREFIX] = (flags & ENV_WARN_PENDING) !== 0 ? FLAG_BYTE_WARN_PENDING : FLAG_BYTE_NONE;
  b.write(json, ENV_PREFIX + 1);
  return b;
}

/**
 * The flags of an envelope body (ENV_WARN_PENDING), or ENV_UNFLAGGED for one without a flag byte:
 * one byte read, the JSON left alone. A whitespace byte this version does not know (a later
 * version's flag) reads as no flag.
 */
export function envelopeFlags(b: Buffer): number {
  const c = b[ENV_PREFIX];
  if (c === FLAG_BYTE_WARN_PENDING) return ENV_WARN_PENDING;
  return c === JSON_OPEN ? ENV_UNFLAGGED : 0;
}

/** An envelope body's JSON bytes (its flag byte, if any, included: JSON whitespace). */
export function envelopeJson(b: Buffer): Buffer {
  return b.subarray(ENV_PREFIX);
}

/**
 * Whether an envelope's JSON says a delay warning was sent, found by a byte search instead of a
 * parse. Exact: only EnvelopeInfo.warned is a `true` under that key (the client facts' values are
 * strings), and a string holding the same bytes has its quotes escaped.
 */
export function envelopeSaysWarned(b: Buffer): boolean {
  return b.indexOf(WARNED_JSON, ENV_PREFIX) >= 0;
}

export function decodeEnvelopeHead(b: Buffer): EnvelopeHead {
  if (b.length < ENV_PREFIX) throw new RangeError('envelope record too short');
  return {
    msgId: b.readDoubleLE(0),
    piece: b.readUInt16LE(8),
    version: b.readUInt32LE(10),
    due: b.readDoubleLE(14),
    arrival: b.readDoubleLE(22),
    rcptCount: b.readUInt16LE(30),
  };
}

export function decodeEnvelope(b: Buffer): EnvelopeRecord {
  const h = decodeEnvelopeHead(b);
  const info = JSON.parse(b.toString('utf8', ENV_PREFIX)) as EnvelopeInfo;
  return { ...h, info };
}

export function encodeDelta(d: DeltaRecord): Buffer {
  const json = Buffer.from(JSON.stringify(d.detail));
  const b = Buffer.allocUnsafe(DELTA_PREFIX + json.length);
  b.writeDoubleLE(d.msgId, 0);
  b.writeUInt16LE(d.piece, 8);
  b.writeUInt32LE(d.version, 10);
  b.writeUInt16LE(d.rcpt, 14);
  b.writeUInt8(d.outcome, 16);
  json.copy(b, DELTA_PREFIX);
  return b;
}

export function decodeDelta(b: Buffer, withDetail = true): DeltaRecord {
  if (b.length < DELTA_PREFIX) throw new RangeError('delta record too short');
  return {
    msgId: b.readDoubleLE(0),
    piece: b.readUInt16LE(8),
    version: b.readUInt32LE(10),
    rcpt: b.readUInt16LE(14),
    outcome: b.readUInt8(16),
    detail: withDetail ? (JSON.parse(b.toString('utf8', DELTA_PREFIX)) as DeltaRecord['detail']) : { t: 0 },
  };
}

export function encodeDone(d: DoneRecord): Buffer {
  const b = Buffer.allocUnsafe(DONE_SIZE);
  b.writeDoubleLE(d.msgId, 0);
  b.writeUInt16LE(d.piece, 8);
  b.writeUInt32LE(d.version, 10);
  b.writeUInt8(d.reason, 14);
  return b;
}

export function decodeDone(b: Buffer): DoneRecord {
  if (b.length < DONE_SIZE) throw new RangeError('done record too short');
  return {
    msgId: b.readDoubleLE(0),
    piece: b.readUInt16LE(8),
    version: b.readUInt32LE(10),
    reason: b.readUInt8(14),
  };
}

/** Message ids are shown to people as fixed-width upper-case hex. */
/** Two upper-case hex digits of each byte value. */
const HEX2 = Array.from({ length: 256 }, (_, b) => b.toString(16).toUpperCase().padStart(2, '0'));
const HEX1 = '0123456789ABCDEF';
const TWO_32 = 0x100000000;

/**
 * A message id as 13 upper-case hex digits. Ids are integers below 2^52 (ids.ts); anything else
 * takes the general path, with as many digits as it needs. (Number#toString(16) runs V8's
 * double-to-radix loop, a few percent of an accept's CPU; these are table look-ups.)
 */
export function formatId(id: number): string {
  if (!(id >= 0 && id < 2 ** 52 && Number.isInteger(id)))
    return id.toString(16).toUpperCase().padStart(13, '0');
  const hi = Math.floor(id / TWO_32);
  const lo = (id - hi * TWO_32) >>> 0;
  return (
    HEX1[hi >>> 16]! +
    HEX2[(hi >>> 8) & 255]! +
    HEX2[hi & 255]! +
    HEX2[lo >>> 24]! +
    HEX2[(lo >>> 16) & 255]! +
    HEX2[(lo >>> 8) & 255]! +
    HEX2[lo & 255]!
  );
}

export function parseId(s: string): number | undefined {
  if (!/^[0-9A-Fa-f]{1,13}$/.test(s)) return undefined;
  return Number.parseInt(s, 16);
}
