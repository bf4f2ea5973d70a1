// What a message's content needs from the next hop, and its 7-bit form for a hop without 8BITMIME
// (RFC 6152 §3, as Postfix converts): 8-bit leaf parts become quoted-printable (a part declared
// "binary" becomes base64), composite parts that held 8-bit content are relabelled 7bit, the
// enclosed message of a message/rfc822 part is converted in place, and a message/global that
// cannot be converted inside is quoted-printable as a whole (RFC 6532 §3.5 allows it), as are
// the UTF-8 report parts message/global-headers and message/global-delivery-status (RFC 6533).
// Everything else — every header field, line and byte of a part that needs no conversion — is
// copied as it is; a converted part keeps its header fields in order, only its
// Content-Transfer-Encoding field is replaced (or added at the end of its header section).
// Fails (a reason, never a throw) where a 7-bit form cannot be made without changing meaning:
// 8-bit bytes in header fields (that is SMTPUTF8's business), in a message/partial or
// message/external-body or other message/* part, in a multipart without a usable boundary, in a
// base64 or quoted-printable part, or under an unknown encoding. Works on the message as held
// for delivery (one Buffer); copies only what it converts. Pure.

import { has8bit, type MimeEntity, parseMime } from '../protocol/mime.js';
import { base64Lines, qpEncode } from '../protocol/qp.js';

export interface ContentFacts {
  buf: Buffer;
  root: MimeEntity;
  /** 8-bit bytes outside every header section (bodies, preambles, epilogues). */
  body8bit: boolean;
  /** 8-bit bytes in the message's header section or in a MIME part's. */
  header8bit: boolean;
}

function walk(e: MimeEntity, f: (e: MimeEntity) => void): void {
  f(e);
  for (const p of e.parts ?? []) walk(p, f);
  if (e.message) walk(e.message, f);
}

export function inspectContent(data: readonly Buffer[]): ContentFacts {
  const buf = data.length === 1 ? (data[0] as Buffer) : Buffer.concat(data);
  const root = parseMime(buf);
  const headers: Array<[number, number]> = [];
  walk(root, (e) => headers.push([e.headerStart, e.headerEnd]));
  headers.sort((a, b) => a[0] - b[0]);
  let header8bit = false;
  let body8bit = false;
  let at = 0;
  for (const [s, e] of headers) {
    if (!body8bit && s > at && has8bit(buf, at, s)) body8bit = true;
    if (!header8bit && has8bit(buf, s, e)) header8bit = true;
    at = Math.max(at, e);
  }
  if (!body8bit && has8bit(buf, at, buf.length)) body8bit = true;
  return { buf, root, body8bit, header8bit };
}

export type SevenBitResult = { ok: true; data: Buffer[]; size: number } | { ok: false; why: string };

class Unconvertible extends Error {}

/** message/* leaf types that may carry a quoted-printable or base64 encoding. */
const ENCODABLE_MESSAGE = new Set(['message/global-headers', 'message/global-delivery-status']);

const CRLF = Buffer.from('\r\n');

function field(name: string, value: string): Buffer {
  return Buffer.from(`${name}: ${value}\r\n`, 'latin1');
}

/** A copy of buf[s, e) with every 8-bit byte replaced by "?" (preamble and epilogue text). */
function ascii(buf: Buffer, s: number, e: number): Buffer {
  if (!has8bit(buf, s, e)) return buf.subarray(s, e);
  const c = Buffer.from(buf.subarray(s, e));
  for (let i = 0; i < c.length; i++) if ((c[i] ?? 0) > 127) c[i] = 63;
  return c;
}

interface Ctx {
  buf: Buffer;
  out: Buffer[];
  /** Header fields may keep 8-bit bytes (the message goes with SMTPUTF8). */
  utf8Headers: boolean;
}

/**
 * The 7-bit form of the message. `utf8Headers`: the hop takes SMTPUTF8 and the message uses it,
 * so UTF-8 header fields stay as they are and only bodies are converted.
 */
export function toSevenBit(facts: ContentFacts, opts: { utf8Headers: boolean }): SevenBitResult {
  const ctx: Ctx = { buf: facts.buf, out: [], utf8Headers: opts.utf8Headers };
  try {
    entity(ctx, facts.root, true);
  } catch (e) {
    if (e instanceof Unconvertible) return { ok: false, why: e.message };
    throw e;
  }
  let size = 0;
  for (const b of ctx.out) size += b.length;
  return { ok: true, data: ctx.out, size };
}

function needs(buf: Buffer, e: MimeEntity): boolean {
  return e.cte === '8bit' || e.cte === 'binary' || has8bit(buf, e.bodyStart, e.bodyEnd);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The charset of 8-bit text that came without one: UTF-8 when it decodes, else RFC 1428's label. */
function charsetOf(buf: Buffer, s: number, e: number): string {
  try {
    utf8.decode(buf.subarray(s, e));
    return 'utf-8';
  } catch {
    return 'unknown-8bit';
  }
}

/**
 * Emits the header section with its Content-Transfer-Encoding set to `cte` and the empty line.
 * A leaf that had no Content-Type (text/plain; charset=us-ascii by default, which 8-bit text is
 * not) gets one naming its charset; the top-level entity gets MIME-Version if it had none.
 */
function header(ctx: Ctx, e: MimeEntity, cte: string, top: boolean, textCharset?: string): void {
  const { buf, out } = ctx;
  if (!ctx.utf8Headers && has8bit(buf, e.headerStart, e.headerEnd))
    throw new Unconvertible('header fields hold 8-bit bytes');
  const tail = e.headerEnd > e.headerStart && buf[e.headerEnd - 1] !== 10 ? [CRLF] : [];
  const extra: Buffer[] = [];
  if (top && !e.mimeVersion) extra.push(field('MIME-Version', '1.0'));
  if (textCharset !== undefined && !e.hasContentType)
    extra.push(field('Content-Type', `text/plain; charset=${textCharset}`));
  if (e.cteField) {
    const [s, t] = e.cteField;
    out.push(
      buf.subarray(e.headerStart, s),
      field('Content-Transfer-Encoding', cte),
      buf.subarray(t, e.headerEnd),
    );
  } else {
    out.push(buf.subarray(e.headerStart, e.headerEnd));
    // No field means 7bit already (RFC 2045 §6.1): nothing to add for a relabelled composite.
    if (cte !== '7bit') extra.push(field('Content-Transfer-Encoding', cte));
  }
  out.push(...tail, ...extra);
  // The empty line as written (or one, when the entity had no body separator).
  out.push(e.bodyStart > e.headerEnd ? buf.subarray(e.headerEnd, e.bodyStart) : CRLF);
}

function entity(ctx: Ctx, e: MimeEntity, top: boolean): void {
  const { buf, out } = ctx;
  if (!needs(buf, e)) {
    // Nothing 8-bit in the body: copied as it is, header fields checked all the same.
    if (!ctx.utf8Headers && has8bit(buf, e.headerStart, e.headerEnd))
      throw new Unconvertible('header fields hold 8-bit bytes');
    out.push(buf.subarray(e.headerStart, e.bodyEnd));
    return;
  }
  if (e.parts) {
    header(ctx, e, '7bit', top);
    let at = e.bodyStart;
    for (const p of e.parts) {
      out.push(ascii(buf, at, p.headerStart));
      entity(ctx, p, false);
      at = p.bodyEnd;
    }
    out.push(ascii(buf, at, e.bodyEnd));
    return;
  }
  if (e.message) {
    const mark = out.length;
    try {
      header(ctx, e, '7bit', top);
      // The enclosed message is a message of its own: it gets MIME-Version too if it had none.
      entity(ctx, e.message, true);
      return;
    } catch (err) {
      // RFC 6532 §3.5: a message/global may carry any encoding; message/rfc822 may not (RFC 2046).
      if (!(err instanceof Unconvertible) || e.type !== 'message/global') throw err;
      out.length = mark;
    }
    header(ctx, e, 'quoted-printable', top);
    out.push(qpEncode(buf, e.bodyStart, e.bodyEnd));
    return;
  }
  if (e.type.startsWith('multipart/')) throw new Unconvertible(`a ${e.type} part without a usable boundary`);
  // RFC 6533 §6.3, §6.4: the UTF-8 report parts, unlike the other message/* types, may be
  // encoded; they are converted as a text part is.
  if (e.type.startsWith('message/') && !ENCODABLE_MESSAGE.has(e.type))
    throw new Unconvertible(`a ${e.type} part holds 8-bit data`);
  if (e.cte === 'binary') {
    header(ctx, e, 'base64', top);
    out.push(base64Lines(buf, e.bodyStart, e.bodyEnd));
    return;
  }
  if (e.cte !== '7bit' && e.cte !== '8bit') throw new Unconvertible(`a ${e.cte} part holds 8-bit bytes`);
  if (!has8bit(buf, e.bodyStart, e.bodyEnd)) {
    // Declared 8bit, holds none: only the label changes.
    header(ctx, e, '7bit', top);
    out.push(buf.subarray(e.bodyStart, e.bodyEnd));
    return;
  }
  const charset = e.type === 'text/plain' ? charsetOf(buf, e.bodyStart, e.bodyEnd) : undefined;
  header(ctx, e, 'quoted-printable', top, charset);
  out.push(qpEncode(buf, e.bodyStart, e.bodyEnd));
}
