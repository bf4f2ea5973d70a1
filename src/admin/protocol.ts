// The control protocol spoken on the admin UNIX socket: one JSON object per line (LF) each way.
//   request:  {"id": 1, "op": "list", "args": {...}}
//   response: {"id": 1, "ok": true, "result": ...}  or  {"id": 1, "ok": false, "error": {"code", "message"}}
// Responses come in request order; a client may pipeline. The HTTP admin carries the same
// ops (POST /api/op/<op> with the args as body). Pure: framing and shapes only, no sockets.
// Invariant: a line longer than the limit is an error for the whole connection (the peer is
// broken or hostile), never silently truncated.
import { MtaError } from '../errors.js';

export interface AdminRequest {
  id: number;
  op: string;
  args?: Record<string, unknown>;
}

export interface AdminErrorBody {
  code: string;
  message: string;
  /** Whether trying again later can help. */
  kind: 'transient' | 'permanent';
  /** The SMTP status the error would give a client (injection). */
  smtp?: { code: number; enhanced: string };
}

export type AdminResponse =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: AdminErrorBody };

/** Error codes with a fixed meaning for clients. */
export const ERR_BAD_REQUEST = 'ADMIN_BAD_REQUEST';
export const ERR_NOT_FOUND = 'ADMIN_NOT_FOUND';
export const ERR_UNKNOWN_OP = 'ADMIN_UNKNOWN_OP';

export function badRequest(message: string): MtaError {
  return new MtaError(ERR_BAD_REQUEST, 'permanent', message);
}

export function notFound(message: string): MtaError {
  return new MtaError(ERR_NOT_FOUND, 'permanent', message);
}

/** Splits a byte stream into LF-terminated lines (CR before LF is dropped). */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;

  constructor(private readonly maxLine: number) {}

  /** Complete lines in this chunk; throws MtaError ADMIN_LINE_TOO_LONG past the limit. */
  feed(chunk: Buffer): string[] {
    const out: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const piece = chunk.subarray(start, nl);
      this.check(piece.length);
      const line = this.parts.length === 0 ? piece : Buffer.concat([...this.parts, piece]);
      this.parts = [];
      this.size = 0;
      const end = line.length > 0 && line[line.length - 1] === 13 ? line.length - 1 : line.length;
      out.push(line.toString('utf8', 0, end));
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.check(rest.length);
      this.parts.push(Buffer.from(rest));
      this.size += rest.length;
    }
    return out;
  }

  /** The bytes of an unfinished line, taken out (the splitter starts afresh). */
  takeRest(): Buffer {
    const rest = Buffer.concat(this.parts);
    this.parts = [];
    this.size = 0;
    return rest;
  }

  private check(n: number): void {
    if (this.size + n > this.maxLine)
      throw new MtaError('ADMIN_LINE_TOO_LONG', 'permanent', `line longer than ${this.maxLine} bytes`);
  }
}

/** Parses one request line; throws ADMIN_BAD_REQUEST with what is wrong. */
export function parseRequest(line: string): AdminRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw badRequest('request is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badRequest('request must be an object');
  const o = v as Record<string, unknown>;
  if (typeof o.id !== 'number' || !Number.isSafeInteger(o.id))
    throw badRequest('request "id" must be an integer');
  if (typeof o.op !== 'string' || o.op.length === 0) throw badRequest('request "op" must be a string');
  const args = o.args;
  if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args)))
    throw badRequest('request "args" must be an object');
  const req: AdminRequest = { id: o.id, op: o.op };
  if (args !== undefined) req.args = args as Record<string, unknown>;
  return req;
}

export function errorBody(e: unknown): AdminErrorBody {
  if (e instanceof MtaError) {
    const b: AdminErrorBody = { code: e.code, message: e.message, kind: e.kind };
    if (e.smtp) b.smtp = e.smtp;
    return b;
  }
  return { code: 'ADMIN_INTERNAL', message: e instanceof Error ? e.message : String(e), kind: 'transient' };
}

export function encodeResponse(r: AdminResponse): string {
  return `${JSON.stringify(r)}\n`;
}

// --- argument readers (shared by every op)

export function optString(args: Record<string, unknown>, key: string): string | undefined {
  const v = args[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw badRequest(`"${key}" must be a string`);
  return v;
}

export function optNumber(args: Record<string, unknown>, key: string): number | undefined {
  const v = args[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
    throw badRequest(`"${key}" must be a number >= 0`);
  return v;
}

export function optBool(args: Record<string, unknown>, key: string): boolean {
  const v = args[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badRequest(`"${key}" must be true or false`);
  return v;
}

export function stringList(args: Record<string, unknown>, key: string): string[] {
  const v = args[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))
    throw badRequest(`"${key}" must be a list of strings`);
  return v as string[];
}
