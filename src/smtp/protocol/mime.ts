// The MIME structure of a message as stored (RFC 2045/2046, RFC 6532 message/global): a tree of
// entities, each with the byte ranges of its header section and body, its content type, boundary
// and transfer encoding. Multipart bodies are split at their own delimiter lines (RFC 2046 §5.1.1:
// an enclosed part never contains an outer boundary, so the outer split needs no knowledge of the
// inner structure); message/rfc822 and message/global bodies that are not encoded are parsed as
// the message they hold. Pure: byte offsets into one Buffer, nothing copied or decoded.
// Invariants: every range lies inside its parent's; a part's body ends before the CRLF that
// precedes the next delimiter (that line break belongs to the delimiter). Never throws: a
// multipart without a usable boundary, or whose delimiter never comes, is treated as a leaf;
// nesting deeper than MAX_DEPTH is treated as a leaf too.

import { isAscii } from 'node:buffer';

export interface MimeEntity {
  /** Header section: [headerStart, headerEnd) including the field lines' line breaks, not the empty line. */
  headerStart: number;
  headerEnd: number;
  /** Body: [bodyStart, bodyEnd); bodyStart is after the empty line (= headerEnd when there is none). */
  bodyStart: number;
  bodyEnd: number;
  /** Lower-case "type/subtype"; when absent or malformed the RFC 2045 default text/plain (in a
   *  multipart/digest, message/rfc822: RFC 2046 §5.1.5). */
  type: string;
  /** Whether the header section has a (well-formed) Content-Type field. */
  hasContentType: boolean;
  /** Lower-case Content-Transfer-Encoding; "7bit" when absent. */
  cte: string;
  /** The Content-Transfer-Encoding field as written: [start, end) of its (possibly folded) lines. */
  cteField?: [number, number];
  /** Whether the header section has a MIME-Version field. */
  mimeVersion: boolean;
  /** Multipart only: the boundary and the parts, in order. */
  boundary?: string;
  parts?: MimeEntity[];
  /** message/rfc822 or message/global with an identity encoding: the enclosed message. */
  message?: MimeEntity;
}

const MAX_DEPTH = 50;

const LF = 10;
const CR = 13;

/** End of the line starting at `i` (index after its LF, or `end`). */
function lineEnd(buf: Buffer, i: number, end: number): number {
  const lf = buf.indexOf(LF, i);
  return lf < 0 || lf >= end ? end : lf + 1;
}

/** Length of the line break ending [i, e): 2 for CRLF, 1 for LF, 0 for none. */
function breakLen(buf: Buffer, i: number, e: number): number {
  if (e > i && buf[e - 1] === LF) return e - 1 > i && buf[e - 2] === CR ? 2 : 1;
  return 0;
}

interface Field {
  name: string;
  start: number;
  end: number;
  /** Unfolded value, latin1-decoded (header bytes are ASCII in the fields we read). */
  value: string;
}

function readFields(buf: Buffer, start: number, end: number): Field[] {
  const out: Field[] = [];
  let i = start;
  while (i < end) {
    const s = i;
    let e = lineEnd(buf, i, end);
    // Continuation lines start with SP or HTAB.
    while (e < end && (buf[e] === 32 || buf[e] === 9)) e = lineEnd(buf, e, end);
    const text = buf.toString('latin1', s, e);
    const colon = text.indexOf(':');
    if (colon > 0) {
      out.push({
        name: text.slice(0, colon).trim().toLowerCase(),
        start: s,
        end: e,
        value: text
          .slice(colon + 1)
          .replace(/\r?\n/g, '')
          .trim(),
      });
    }
    i = e;
  }
  return out;
}

/** RFC 2045 parameter value of `name` in a Content-Type value (quoted or token), or undefined. */
export function parameter(value: string, name: string): string | undefined {
  const re = /;\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)/g;
  for (let m = re.exec(value); m !== null; m = re.exec(value)) {
    if ((m[1] ?? '').toLowerCase() !== name) continue;
    const v = m[2] ?? '';
    return v.startsWith('"') ? v.slice(1, -1).replace(/\\(.)/g, '$1') : v;
  }
  return undefined;
}

/** Parses the entity in buf[start, end). */
export function parseMime(
  buf: Buffer,
  start = 0,
  end = buf.length,
  depth = 0,
  defaultType = 'text/plain',
): MimeEntity {
  // Header section: field lines up to the first empty line.
  let i = start;
  let headerEnd = end;
  let bodyStart = end;
  while (i < end) {
    const e = lineEnd(buf, i, end);
    if (e - i === breakLen(buf, i, e) && e - i > 0) {
      headerEnd = i;
      bodyStart = e;
      break;
    }
    i = e;
  }
  const fields = readFields(buf, start, headerEnd);
  const ctField = fields.find((f) => f.name === 'content-type');
  const cteField = fields.find((f) => f.name === 'content-transfer-encoding');
  const typeMatch = ctField
    ? /^([!#$%&'*+.^_`|~0-9a-z-]+)\/([!#$%&'*+.^_`|~0-9a-z-]+)/i.exec(ctField.value)
    : null;
  const entity: MimeEntity = {
    headerStart: start,
    headerEnd,
    bodyStart,
    bodyEnd: end,
    type: typeMatch ? `${typeMatch[1]}/${typeMatch[2]}`.toLowerCase() : defaultType,
    hasContentType: typeMatch !== null,
    cte: cteField ? cteField.value.toLowerCase().split(/[\s;(]/)[0] || '7bit' : '7bit',
    mimeVersion: fields.some((f) => f.name === 'mime-version'),
  };
  if (cteField) entity.cteField = [cteField.start, cteField.end];
  if (depth >= MAX_DEPTH) return entity;
  const identity = entity.cte === '7bit' || entity.cte === '8bit' || entity.cte === 'binary';
  if (entity.type.startsWith('multipart/') && ctField && identity) {
    const boundary = parameter(ctField.value, 'boundary');
    if (boundary !== undefined && boundary.length > 0 && boundary.length <= 200) {
      const child = entity.type === 'multipart/digest' ? 'message/rfc822' : 'text/plain';
      const parts = splitMultipart(buf, bodyStart, end, boundary, depth, child);
      if (parts) {
        entity.boundary = boundary;
        entity.parts = parts;
      }
    }
  } else if ((entity.type === 'message/rfc822' || entity.type === 'message/global') && identity) {
    entity.message = parseMime(buf, bodyStart, end, depth + 1);
  }
  return entity;
}

/** Whether the line [s, e) is a delimiter of `b`: "--b" or "--b--", then only LWSP and the break. */
function delimiter(buf: Buffer, s: number, e: number, b: Buffer): 'part' | 'close' | undefined {
  if (e - s < b.length + 2 || buf[s] !== 45 || buf[s + 1] !== 45) return undefined;
  if (buf.compare(b, 0, b.length, s + 2, s + 2 + b.length) !== 0) return undefined;
  let k = s + 2 + b.length;
  let kind: 'part' | 'close' = 'part';
  if (k + 1 < e && buf[k] === 45 && buf[k + 1] === 45) {
    kind = 'close';
    k += 2;
  }
  const stop = e - breakLen(buf, s, e);
  for (; k < stop; k++) if (buf[k] !== 32 && buf[k] !== 9) return undefined;
  return kind;
}

function splitMultipart(
  buf: Buffer,
  start: number,
  end: number,
  boundary: string,
  depth: number,
  child: string,
): MimeEntity[] | undefined {
  const b = Buffer.from(boundary, 'latin1');
  const parts: MimeEntity[] = [];
  let partStart = -1;
  let prevBreak = 0; // line break length before the current line
  let i = start;
  let closed = false;
  while (i < end) {
    const e = lineEnd(buf, i, end);
    const kind = delimiter(buf, i, e, b);
    if (kind !== undefined) {
      // The break before the delimiter belongs to it; the first delimiter may open the body.
      if (partStart >= 0)
        parts.push(parseMime(buf, partStart, Math.max(partStart, i - prevBreak), depth + 1, child));
      if (kind === 'close') {
        closed = true;
        break;
      }
      partStart = e;
    }
    prevBreak = breakLen(buf, i, e);
    i = e;
  }
  if (!closed && partStart < 0) return undefined;
  // A missing close delimiter: the last part runs to the end (as Python's email and Postfix read it).
  if (!closed && partStart >= 0) parts.push(parseMime(buf, partStart, end, depth + 1, child));
  return parts;
}

/** True when buf[start, end) holds a byte above 127. */
export function has8bit(buf: Buffer, start = 0, end = buf.length): boolean {
  return end > start && !isAscii(buf.subarray(start, end));
}
