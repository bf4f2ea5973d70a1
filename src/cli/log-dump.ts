// `logmta log dump [--json] SEGMENT`: prints the records of one segment file, for people
// (one line per record: offset, length, type, decoded fields) or as JSON lines (--json).
// Read-only. Unlike recovery it does not stop at the first bad record: it reports the bad
// bytes and resumes at the next valid frame, so one flipped bit does not hide the rest.
//
// A single file does not say whether it is its lane's newest segment, so a bad record with
// nothing valid after it is reported as a torn tail (what it is in the newest segment; in an
// older one `log verify` calls it corruption). Exit codes: 0 clean, 1 torn tail only,
// 2 corruption (a bad record followed by valid ones, a missing header, an undecodable body),
// 64 usage, 66 no such file.
import { promises as fsp } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseCommand } from './args.js';
import { readFrame, validFrameAfter } from '../queue/record/frame.js';
import {
  CHUNK_PREFIX,
  DATA_PREFIX,
  DONE_COMPLETED,
  DONE_DELETED,
  DONE_MOVED,
  DONE_REPAIR,
  decodeChunkHead,
  decodeDataId,
  decodeDelta,
  decodeDone,
  decodeEnvelope,
  decodeHeader,
  formatId,
  isRecordType,
  OUTCOME_DELIVERED,
  OUTCOME_FAILED,
  RT_CHUNK,
  RT_DATA,
  RT_DELTA,
  RT_DONE,
  RT_ENVELOPE,
  RT_HEADER,
} from '../queue/record/records.js';

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * One line of the dump: a record (type = record type name, plus its decoded fields), or a
 * stretch of bytes that is not one (type 'torn-tail' or 'corruption', with a reason).
 */
export interface DumpEntry {
  offset: number;
  length: number;
  type: string;
  [field: string]: unknown;
}

export interface DumpResult {
  entries: DumpEntry[];
  records: number;
  tornTail: boolean;
  corruptions: number;
}

const TYPE_NAMES: Record<number, string> = {
  [RT_HEADER]: 'header',
  [RT_DATA]: 'data',
  [RT_ENVELOPE]: 'envelope',
  [RT_DELTA]: 'delta',
  [RT_DONE]: 'done',
  [RT_CHUNK]: 'chunk',
};
const OUTCOMES: Record<number, string> = { [OUTCOME_DELIVERED]: 'delivered', [OUTCOME_FAILED]: 'failed' };
const REASONS: Record<number, string> = {
  [DONE_COMPLETED]: 'completed',
  [DONE_MOVED]: 'moved',
  [DONE_DELETED]: 'deleted',
  [DONE_REPAIR]: 'repair',
};

const iso = (t: number) =>
  Number.isFinite(t) && Math.abs(t) < 8.64e15 ? new Date(t).toISOString() : String(t);

/** The first line of the message data, without its line end, at most 200 characters. */
function firstLine(body: Buffer, prefix = DATA_PREFIX): string {
  const end = Math.min(body.length, prefix + 400);
  let s = body.toString('latin1', prefix, end);
  const nl = s.search(/\r?\n/);
  if (nl >= 0) s = s.slice(0, nl);
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}

/** Decodes a record body into the fields shown for it. Throws on an undecodable body. */
function describe(type: number, body: Buffer): Record<string, unknown> {
  switch (type) {
    case RT_HEADER:
      return { header: decodeHeader(body) };
    case RT_DATA:
      if (body.length < DATA_PREFIX) throw new RangeError('data record too short');
      return {
        id: formatId(decodeDataId(body)),
        size: body.length - DATA_PREFIX,
        firstLine: firstLine(body),
      };
    case RT_CHUNK: {
      const c = decodeChunkHead(body);
      const out: Record<string, unknown> = {
        id: formatId(c.msgId),
        at: c.offset,
        size: body.length - CHUNK_PREFIX,
        last: c.last,
      };
      if (c.offset === 0) out.firstLine = firstLine(body, CHUNK_PREFIX);
      return out;
    }
    case RT_ENVELOPE: {
      const e = decodeEnvelope(body);
      return {
        id: formatId(e.msgId),
        piece: e.piece,
        version: e.version,
        due: iso(e.due),
        arrival: iso(e.arrival),
        rcptCount: e.rcptCount,
        info: e.info,
      };
    }
    case RT_DELTA: {
      const d = decodeDelta(body);
      return {
        id: formatId(d.msgId),
        piece: d.piece,
        version: d.version,
        rcpt: d.rcpt,
        outcome: OUTCOMES[d.outcome] ?? `unknown(${d.outcome})`,
        detail: d.detail,
      };
    }
    case RT_DONE: {
      const d = decodeDone(body);
      return {
        id: formatId(d.msgId),
        piece: d.piece,
        version: d.version,
        reason: REASONS[d.reason] ?? `unknown(${d.reason})`,
      };
    }
    default:
      throw new RangeError(`unknown record type ${type}`);
  }
}

/** Walks the bytes of a segment file. Pure. */
export function dumpSegment(buf: Buffer): DumpResult {
  const entries: DumpEntry[] = [];
  const it = walkSegment(buf);
  for (;;) {
    const n = it.next();
    if (n.done) return { ...n.value, entries };
    entries.push(n.value);
  }
}

/** Walks the bytes of a segment file, yielding each entry as it is found; returns the counts. Pure. */
function* walkSegment(buf: Buffer): Generator<DumpEntry, Omit<DumpResult, 'entries'>> {
  let records = 0;
  let corruptions = 0;
  let tornTail = false;
  let off = 0;
  const bad = (length: number, reason: string): DumpEntry => {
    corruptions++;
    return { offset: off, length, type: 'corruption', reason };
  };
  if (buf.length === 0) {
    // Created, header never written: what a crash during segment creation leaves.
    tornTail = true;
    yield { offset: 0, length: 0, type: 'torn-tail', reason: 'empty file (no header)' };
  }
  while (off < buf.length) {
    const r = readFrame(buf, off, isRecordType);
    if (r.kind === 'record') {
      records++;
      const length = r.next - off;
      if (off === 0 && r.type !== RT_HEADER) yield bad(0, 'missing segment header');
      if (off > 0 && r.type === RT_HEADER) yield bad(0, 'segment header after the start');
      let entry: DumpEntry;
      try {
        entry = { offset: off, length, type: TYPE_NAMES[r.type]!, ...describe(r.type, r.body) };
      } catch (e) {
        entry = bad(
          length,
          `undecodable ${TYPE_NAMES[r.type]} record: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
      yield entry;
      off = r.next;
      continue;
    }
    const later = validFrameAfter(buf, off + 1, isRecordType);
    const reason = r.kind === 'zero' ? 'zero bytes' : r.kind === 'short' ? 'incomplete record' : r.reason;
    if (later < 0) {
      // Nothing valid follows: the end of what was written (torn, or zero-filled).
      tornTail = true;
      yield { offset: off, length: buf.length - off, type: 'torn-tail', reason };
      break;
    }
    yield bad(later - off, `${reason}; next valid record at ${later}`);
    off = later;
  }
  return { records, tornTail, corruptions };
}

const USAGE = 'usage: logmta log dump [--json] SEGMENT\n';

function human(e: DumpEntry): string {
  const { offset, length, type, ...rest } = e;
  const head = `${String(offset).padStart(10)} ${String(length).padStart(8)}  ${type.padEnd(10)}`;
  switch (type) {
    case 'torn-tail':
      return `${head} ${String(rest.reason)} (${length} bytes a restart cuts off if this is the newest segment)`;
    case 'corruption':
      return `${head} ${String(rest.reason)}`;
    case 'header':
      return `${head} ${JSON.stringify(rest.header)}`;
    case 'data':
      return `${head} id=${rest.id} size=${rest.size} first=${JSON.stringify(rest.firstLine)}`;
    case 'chunk':
      return `${head} id=${rest.id} at=${rest.at} size=${rest.size}${rest.last ? ' last' : ''}${rest.firstLine !== undefined ? ` first=${JSON.stringify(rest.firstLine)}` : ''}`;
    case 'envelope':
      return `${head} id=${rest.id} piece=${rest.piece} v${rest.version} due=${rest.due} arrival=${rest.arrival} rcpts=${rest.rcptCount} ${JSON.stringify(rest.info)}`;
    case 'delta':
      return `${head} id=${rest.id} piece=${rest.piece} v${rest.version} rcpt=${rest.rcpt} ${rest.outcome} ${JSON.stringify(rest.detail)}`;
    case 'done':
      return `${head} id=${rest.id} piece=${rest.piece} v${rest.version} ${rest.reason}`;
    default:
      return `${head} ${JSON.stringify(rest)}`;
  }
}

export async function run(argv: string[], io: Io): Promise<number> {
  const parsed = parseCommand('log dump', USAGE, io, () => parse(argv));
  if (typeof parsed === 'number') return parsed;
  if (parsed.positionals.length !== 1) {
    io.stderr.write(`logmta log dump: exactly one segment file\n${USAGE}`);
    return 64;
  }
  const path = parsed.positionals[0]!;
  let buf: Buffer;
  try {
    buf = await fsp.readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EISDIR' || code === 'ENOTDIR') {
      io.stderr.write(`logmta log dump: ${path}: ${code === 'EISDIR' ? 'is a directory' : 'no such file'}\n`);
      return 66;
    }
    throw e;
  }
  const json = parsed.values.json;
  const out = { failed: undefined as Error | undefined };
  // Stays attached: a write error may be reported after we return.
  io.stdout.on('error', (e: Error) => {
    out.failed = e;
  });
  // Written in chunks with backpressure: a 64 MiB segment holds hundreds of thousands of
  // records, and a slow reader (a pager) must not make us hold them all in memory.
  let chunk = json ? '' : `${'offset'.padStart(10)} ${'length'.padStart(8)}  type\n`;
  const it = walkSegment(buf);
  let res: Omit<DumpResult, 'entries'> | undefined;
  for (;;) {
    const n = it.next();
    if (n.done) {
      res = n.value;
      break;
    }
    chunk += json ? `${JSON.stringify(n.value)}\n` : `${human(n.value)}\n`;
    if (chunk.length > 64 * 1024) {
      if (!(await write(io.stdout, chunk, out))) break;
      chunk = '';
    }
  }
  if (res === undefined) return stopped(out.failed);
  if (!(await write(io.stdout, chunk, out))) return stopped(out.failed);
  const summary = {
    type: 'summary',
    file: path,
    bytes: buf.length,
    records: res.records,
    tornTail: res.tornTail,
    corruptions: res.corruptions,
  };
  const last = json
    ? `${JSON.stringify(summary)}\n`
    : `${path}: ${buf.length} bytes, ${res.records} records` +
      `${res.tornTail ? ', torn tail' : ''}${res.corruptions > 0 ? `, ${res.corruptions} CORRUPT stretch(es)` : ''}\n`;
  if (!(await write(io.stdout, last, out))) return stopped(out.failed);
  return res.corruptions > 0 ? 2 : res.tornTail ? 1 : 0;
}

/** The reader went away (EPIPE, as with `| head`): stop quietly. Any other write error is real. */
function stopped(e: Error | undefined): number {
  if (e && (e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  return 0;
}

/**
 * Writes, then waits for 'drain' if the stream's buffer is full. Resolves false once the stream
 * has failed (EPIPE: the reader, e.g. `head`, went away): the dump then stops quietly.
 */
function write(
  stream: NodeJS.WritableStream,
  text: string,
  state: { failed: Error | undefined },
): Promise<boolean> {
  if (state.failed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('error', done);
      resolve(state.failed === undefined);
    };
    if (stream.write(text)) resolve(true);
    else {
      stream.once('drain', done);
      stream.once('error', done);
    }
  });
}

function parse(args: string[]) {
  return parseArgs({
    args,
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    allowPositionals: true,
    strict: true,
  });
}
