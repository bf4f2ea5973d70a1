// The Sendmail milter protocol, version 6 (libmilter 8.14+, as Postfix's milter8 client speaks
// it): packet framing, the commands an MTA sends and the responses a filter returns, encoded and
// decoded in both directions (the filter side exists for tests and fake filters).
// Wire format: a packet is a 4-byte big-endian length (command byte + data), one command byte,
// then data; strings are NUL-terminated, integers 32-bit (16-bit for the CONNECT port),
// big-endian.
// Strings here are byte strings (one char per octet, 'latin1'), so header bytes pass through
// unchanged; bytesOf/textOf convert envelope text (UTF-8) at the edge.
// Pure; decoding never throws for bad input — it returns a MilterProtocolError.
// Size (over 400 lines): one wire format, both directions, kept together so an encoder and its
// decoder are read side by side.
import { MtaError } from '../errors.js';

// --- constants ------------------------------------------------------------------------------

export const MILTER_VERSION = 6;

/** Actions a filter may ask for (SMFIF_*). */
export const SMFIF = {
  ADDHDRS: 0x01,
  CHGBODY: 0x02,
  ADDRCPT: 0x04,
  DELRCPT: 0x08,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
  ADDRCPT_PAR: 0x80,
  SETSYMLIST: 0x100,
} as const;

/** Protocol flags: events a filter does not want, replies it will not send (SMFIP_*). */
export const SMFIP = {
  NOCONNECT: 0x1,
  NOHELO: 0x2,
  NOMAIL: 0x4,
  NORCPT: 0x8,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  SKIP: 0x400,
  RCPT_REJ: 0x800,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000,
} as const;

/** Macro stages of SMFIR_SETSYMLIST (SMFIM_*). */
export const SMFIM = { CONNECT: 0, HELO: 1, ENVFROM: 2, ENVRCPT: 3, DATA: 4, EOM: 5, EOH: 6 } as const;
export type MacroStage = (typeof SMFIM)[keyof typeof SMFIM];

/** Largest body chunk sent in one SMFIC_BODY (libmilter's MILTER_CHUNK_SIZE). */
export const BODY_CHUNK = 65535;
/** Largest packet accepted from a filter (a body replacement arrives in chunks of ≤ 64 KiB). */
const MAX_PACKET = 16 * 1024 * 1024;

// --- values ---------------------------------------------------------------------------------

export type ConnectFamily = '4' | '6' | 'L' | 'U';

/** MTA → filter. */
export type MtaCommand =
  | { type: 'optneg'; version: number; actions: number; protocol: number }
  | { type: 'macro'; stage: string; macros: [string, string][] }
  | { type: 'connect'; hostname: string; family: ConnectFamily; port: number; address: string }
  | { type: 'helo'; name: string }
  | { type: 'mail'; args: string[] }
  | { type: 'rcpt'; args: string[] }
  | { type: 'data' }
  | { type: 'header'; name: string; value: string }
  | { type: 'eoh' }
  | { type: 'body'; chunk: Buffer }
  | { type: 'eom' }
  | { type: 'abort' }
  | { type: 'quit' }
  | { type: 'quitnc' }
  | { type: 'unknown'; line: string };

/** Filter → MTA. */
export type MilterResponse =
  | { type: 'optneg'; version: number; actions: number; protocol: number; macros: [number, string][] }
  | { type: 'continue' }
  | { type: 'accept' }
  | { type: 'reject' }
  | { type: 'tempfail' }
  | { type: 'discard' }
  | { type: 'shutdown' }
  | { type: 'connfail' }
  | { type: 'progress' }
  | { type: 'skip' }
  | { type: 'replycode'; text: string }
  | { type: 'quarantine'; reason: string }
  | { type: 'addheader'; name: string; value: string }
  | { type: 'insheader'; index: number; name: string; value: string }
  | { type: 'chgheader'; index: number; name: string; value: string }
  | { type: 'addrcpt'; rcpt: string }
  | { type: 'addrcpt_par'; rcpt: string; args: string }
  | { type: 'delrcpt'; rcpt: string }
  | { type: 'chgfrom'; from: string; args: string }
  | { type: 'replbody'; chunk: Buffer };

export interface Packet {
  cmd: string;
  data: Buffer;
}

export class MilterProtocolError extends MtaError {
  constructor(why: string) {
    super('MILTER_PROTOCOL', 'transient', why, { smtp: { code: 451, enhanced: '4.7.1' } });
    this.name = 'MilterProtocolError';
  }
}

/** UTF-8 text as a byte string. */
export const bytesOf = (s: string): string => Buffer.from(s, 'utf8').toString('latin1');
/** A byte string read as UTF-8 text. */
export const textOf = (b: string): string => Buffer.from(b, 'latin1').toString('utf8');

// --- framing --------------------------------------------------------------------------------

export function packet(cmd: string, parts: readonly (Buffer | string)[] = []): Buffer {
  const bufs = parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p));
  let n = 1;
  for (const b of bufs) n += b.length;
  const head = Buffer.allocUnsafe(5);
  head.writeUInt32BE(n, 0);
  head[4] = cmd.charCodeAt(0);
  return Buffer.concat([head, ...bufs], n + 4);
}

/** Splits a byte stream into packets; keeps at most one partial packet. */
export class PacketReader {
  private buf: Buffer = Buffer.alloc(0);

  /** Appends bytes; returns the complete packets, or an error for an impossible length. */
  push(chunk: Buffer): Packet[] | MilterProtocolError {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Packet[] = [];
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32BE(off);
      if (len < 1) return new MilterProtocolError('packet length 0');
      if (len > MAX_PACKET)
        return new MilterProtocolError(`packet length ${len} is larger than ${MAX_PACKET}`);
      if (this.buf.length - off < 4 + len) break;
      const cmd = String.fromCharCode(this.buf[off + 4] as number);
      out.push({ cmd, data: this.buf.subarray(off + 5, off + 4 + len) });
      off += 4 + len;
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
    return out;
  }

  get pending(): number {
    return this.buf.length;
  }
}

// --- field helpers --------------------------------------------------------------------------

const z = (s: string): string => `${s}\0`;
function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

/** Reads NUL-terminated strings and integers from a packet's data. */
class Fields {
  off = 0;
  constructor(private readonly d: Buffer) {}
  get left(): number {
    return this.d.length - this.off;
  }
  str(): string {
    const end = this.d.indexOf(0, this.off);
    if (end < 0) throw new MilterProtocolError('string without its NUL terminator');
    const s = this.d.toString('latin1', this.off, end);
    this.off = end + 1;
    return s;
  }
  u32(): number {
    if (this.left < 4) throw new MilterProtocolError('packet too short for a 32-bit number');
    const v = this.d.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  u16(): number {
    if (this.left < 2) throw new MilterProtocolError('packet too short for a 16-bit number');
    const v = this.d.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  byte(): string {
    if (this.left < 1) throw new MilterProtocolError('packet too short');
    return String.fromCharCode(this.d[this.off++] as number);
  }
  rest(): Buffer {
    const r = this.d.subarray(this.off);
    this.off = this.d.length;
    return r;
  }
  /** Strings until the end of the packet. */
  strs(): string[] {
    const out: string[] = [];
    while (this.left > 0) out.push(this.str());
    return out;
  }
  end(what: string): void {
    if (this.left !== 0) throw new MilterProtocolError(`${this.left} stray bytes after ${what}`);
  }
}

function decodeWith<T>(p: Packet, fn: (f: Fields) => T): T | MilterProtocolError {
  try {
    return fn(new Fields(p.data));
  } catch (e) {
    if (e instanceof MilterProtocolError) return e;
    throw e;
  }
}

// --- MTA → filter ---------------------------------------------------------------------------

export function encodeCommand(c: MtaCommand): Buffer {
  switch (c.type) {
    case 'optneg':
      return packet('O', [u32(c.version), u32(c.actions), u32(c.protocol)]);
    case 'macro':
      return packet('D', [c.stage, ...c.macros.flatMap(([k, v]) => [z(k), z(v)])]);
    case 'connect': {
      if (c.family === 'U') return packet('C', [z(c.hostname), 'U']);
      const port = Buffer.allocUnsafe(2);
      port.writeUInt16BE(c.port, 0);
      return packet('C', [z(c.hostname), c.family, port, z(c.address)]);
    }
    case 'helo':
      return packet('H', [z(c.name)]);
    case 'mail':
      return packet('M', c.args.map(z));
    case 'rcpt':
      return packet('R', c.args.map(z));
    case 'data':
      return packet('T');
    case 'header':
      return packet('L', [z(c.name), z(c.value)]);
    case 'eoh':
      return packet('N');
    case 'body':
      return packet('B', [c.chunk]);
    case 'eom':
      return packet('E');
    case 'abort':
      return packet('A');
    case 'quit':
      return packet('Q');
    case 'quitnc':
      return packet('K');
    case 'unknown':
      return packet('U', [z(c.line)]);
  }
}

export function decodeCommand(p: Packet): MtaCommand | MilterProtocolError {
  return decodeWith(p, (f): MtaCommand => {
    let c: MtaCommand;
    switch (p.cmd) {
      case 'O':
        c = { type: 'optneg', version: f.u32(), actions: f.u32(), protocol: f.u32() };
        break;
      case 'D': {
        const stage = f.byte();
        const all = f.strs();
        if (all.length % 2 !== 0) throw new MilterProtocolError('macro name without a value');
        const macros: [string, string][] = [];
        for (let i = 0; i < all.length; i += 2) macros.push([all[i] as string, all[i + 1] as string]);
        c = { type: 'macro', stage, macros };
        break;
      }
      case 'C': {
        const hostname = f.str();
        const fam = f.byte();
        if (fam === 'U') c = { type: 'connect', hostname, family: 'U', port: 0, address: '' };
        else if (fam === '4' || fam === '6' || fam === 'L')
          c = { type: 'connect', hostname, family: fam, port: f.u16(), address: f.str() };
        else throw new MilterProtocolError(`unknown address family ${JSON.stringify(fam)}`);
        break;
      }
      case 'H':
        c = { type: 'helo', name: f.str() };
        break;
      case 'M':
        c = { type: 'mail', args: f.strs() };
        break;
      case 'R':
        c = { type: 'rcpt', args: f.strs() };
        break;
      case 'L':
        c = { type: 'header', name: f.str(), value: f.str() };
        break;
      case 'B':
        c = { type: 'body', chunk: Buffer.from(f.rest()) };
        break;
      case 'U':
        c = { type: 'unknown', line: f.str() };
        break;
      default: {
        const simple: Record<string, MtaCommand> = {
          T: { type: 'data' },
          N: { type: 'eoh' },
          E: { type: 'eom' },
          A: { type: 'abort' },
          Q: { type: 'quit' },
          K: { type: 'quitnc' },
        };
        const s = simple[p.cmd];
        if (s === undefined) throw new MilterProtocolError(`unknown command ${JSON.stringify(p.cmd)}`);
        c = s;
      }
    }
    f.end(`command ${p.cmd}`);
    return c;
  });
}

// --- filter → MTA ---------------------------------------------------------------------------

const SIMPLE_RESPONSES: Record<string, MilterResponse['type']> = {
  c: 'continue',
  a: 'accept',
  r: 'reject',
  t: 'tempfail',
  d: 'discard',
  '4': 'shutdown',
  f: 'connfail',
  p: 'progress',
  s: 'skip',
};
const SIMPLE_CODES: Record<string, string> = Object.fromEntries(
  Object.entries(SIMPLE_RESPONSES).map(([k, v]) => [v, k]),
);

export function encodeResponse(r: MilterResponse): Buffer {
  switch (r.type) {
    case 'optneg':
      return packet('O', [
        u32(r.version),
        u32(r.actions),
        u32(r.protocol),
        ...r.macros.flatMap(([stage, names]) => [u32(stage), z(names)]),
      ]);
    case 'replycode':
      return packet('y', [z(r.text)]);
    case 'quarantine':
      return packet('q', [z(r.reason)]);
    case 'addheader':
      return packet('h', [z(r.name), z(r.value)]);
    case 'insheader':
      return packet('i', [u32(r.index), z(r.name), z(r.value)]);
    case 'chgheader':
      return packet('m', [u32(r.index), z(r.name), z(r.value)]);
    case 'addrcpt':
      return packet('+', [z(r.rcpt)]);
    case 'addrcpt_par':
      return packet('2', [z(r.rcpt), ...(r.args === '' ? [] : [z(r.args)])]);
    case 'delrcpt':
      return packet('-', [z(r.rcpt)]);
    case 'chgfrom':
      return packet('e', [z(r.from), ...(r.args === '' ? [] : [z(r.args)])]);
    case 'replbody':
      return packet('b', [r.chunk]);
    default:
      return packet(SIMPLE_CODES[r.type] as string);
  }
}

export function decodeResponse(p: Packet): MilterResponse | MilterProtocolError {
  return decodeWith(p, (f): MilterResponse => {
    let r: MilterResponse;
    switch (p.cmd) {
      case 'O': {
        const version = f.u32();
        const actions = f.u32();
        const protocol = f.u32();
        const macros: [number, string][] = [];
        while (f.left > 0) macros.push([f.u32(), f.str()]);
        r = { type: 'optneg', version, actions, protocol, macros };
        break;
      }
      case 'y':
        r = { type: 'replycode', text: f.str() };
        break;
      case 'q':
        r = { type: 'quarantine', reason: f.str() };
        break;
      case 'h':
        r = { type: 'addheader', name: f.str(), value: f.str() };
        break;
      case 'i':
        r = { type: 'insheader', index: f.u32(), name: f.str(), value: f.str() };
        break;
      case 'm':
        r = { type: 'chgheader', index: f.u32(), name: f.str(), value: f.str() };
        break;
      case '+':
        r = { type: 'addrcpt', rcpt: f.str() };
        break;
      case '2':
        r = { type: 'addrcpt_par', rcpt: f.str(), args: f.left > 0 ? f.str() : '' };
        break;
      case '-':
        r = { type: 'delrcpt', rcpt: f.str() };
        break;
      case 'e':
        r = { type: 'chgfrom', from: f.str(), args: f.left > 0 ? f.str() : '' };
        break;
      case 'b':
        r = { type: 'replbody', chunk: Buffer.from(f.rest()) };
        break;
      default: {
        const t = SIMPLE_RESPONSES[p.cmd];
        if (t === undefined) throw new MilterProtocolError(`unknown response ${JSON.stringify(p.cmd)}`);
        r = { type: t } as MilterResponse;
      }
    }
    f.end(`response ${p.cmd}`);
    return r;
  });
}
