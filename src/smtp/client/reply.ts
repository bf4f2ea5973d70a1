// SMTP reply parser for the client side (RFC 5321 §4.2). Pure and incremental: feed it the bytes
// read from the socket in whatever pieces they arrive; it returns every complete reply.
// Invariant: memory held is bounded by the limits — a reply line longer than maxLineLength, a
// multi-line reply with more than maxLines lines or maxReplyBytes bytes, or a malformed line
// raises a ReplyProtocolError; after that the parser is dead (the connection must be dropped).

import { MtaError } from '../../errors.js';

export interface Reply {
  /** Three-digit reply code, 200..599. */
  code: number;
  /** Enhanced status code (RFC 2034/3463) from the first line, when present and of the same class. */
  enhanced: string | undefined;
  /** Text of each line after "ddd-"/"ddd ", as sent. */
  lines: string[];
  /** One-line text for diagnostics: every line with its enhanced code removed, joined by spaces. */
  text: string;
}

export interface ReplyLimits {
  /** Longest reply line, in bytes, including CRLF. */
  maxLineLength: number;
  /** Most lines in one multi-line reply. */
  maxLines: number;
  /** Most bytes in one multi-line reply. */
  maxReplyBytes: number;
}

const defaultReplyLimits: ReplyLimits = {
  maxLineLength: 2048,
  maxLines: 100,
  maxReplyBytes: 64 * 1024,
};

export class ReplyProtocolError extends MtaError {
  constructor(message: string) {
    super('SMTP_REPLY_PROTOCOL', 'transient', message, { smtp: { code: 451, enhanced: '4.5.0' } });
    this.name = 'ReplyProtocolError';
  }
}

const ENHANCED_RE = /^([245])\.(\d{1,3})\.(\d{1,3})(?: +|$)/;

/** Splits an enhanced status code off a reply line's text if its class matches the reply code. */
export function splitEnhanced(code: number, text: string): { enhanced: string | undefined; rest: string } {
  const m = ENHANCED_RE.exec(text);
  if (m === null || Number(m[1]) !== Math.floor(code / 100)) return { enhanced: undefined, rest: text };
  return { enhanced: `${m[1]}.${m[2]}.${m[3]}`, rest: text.slice(m[0].length) };
}

/** Builds a Reply value from a code and its lines (also used to synthesize local replies). */
export function makeReply(code: number, lines: string[]): Reply {
  const first = splitEnhanced(code, lines[0] ?? '');
  const parts: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const rest = i === 0 ? first.rest : splitEnhanced(code, lines[i] ?? '').rest;
    if (rest.length > 0) parts.push(rest);
  }
  return { code, enhanced: first.enhanced, lines, text: parts.join(' ') };
}

export class ReplyParser {
  private readonly limits: ReplyLimits;
  /** Bytes of an incomplete line carried over from the previous feed. */
  private partial: Buffer | undefined;
  private code = 0;
  private lines: string[] = [];
  private bytes = 0;
  private dead: ReplyProtocolError | undefined;

  constructor(limits: Partial<ReplyLimits> = {}) {
    this.limits = { ...defaultReplyLimits, ...limits };
  }

  /** True while a multi-line reply or a partial line is pending. */
  get pending(): boolean {
    return this.partial !== undefined || this.lines.length > 0;
  }

  /** Consumes bytes, returns the replies completed by them. Throws ReplyProtocolError. */
  feed(chunk: Buffer): Reply[] {
    if (this.dead) throw this.dead;
    const out: Reply[] = [];
    let buf = chunk;
    if (this.partial !== undefined) {
      buf = Buffer.concat([this.partial, chunk]);
      this.partial = undefined;
    }
    let pos = 0;
    while (pos < buf.length) {
      const lf = buf.indexOf(10, pos);
      if (lf < 0) {
        if (buf.length - pos >= this.limits.maxLineLength) this.fail('reply line too long');
        // Copy so that a small remainder does not pin a large socket buffer.
        this.partial = Buffer.from(buf.subarray(pos));
        break;
      }
      if (lf + 1 - pos > this.limits.maxLineLength) this.fail('reply line too long');
      const end = lf > pos && buf[lf - 1] === 13 ? lf - 1 : lf;
      const r = this.line(buf, pos, end, lf + 1 - pos);
      if (r !== undefined) out.push(r);
      pos = lf + 1;
    }
    return out;
  }

  private line(buf: Buffer, start: number, end: number, size: number): Reply | undefined {
    if (end - start < 3) this.fail('malformed reply line');
    const d0 = (buf[start] ?? 0) - 48;
    const d1 = (buf[start + 1] ?? 0) - 48;
    const d2 = (buf[start + 2] ?? 0) - 48;
    if (d0 < 2 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) this.fail('malformed reply code');
    const code = d0 * 100 + d1 * 10 + d2;
    let last = true;
    if (end - start > 3) {
      const sep = buf[start + 3];
      if (sep === 45 /* - */) last = false;
      else if (sep !== 32 /* space */) this.fail('malformed reply separator');
    }
    if (this.lines.length > 0 && code !== this.code) this.fail('reply code changed inside multi-line reply');
    this.code = code;
    this.bytes += size;
    if (this.lines.length + 1 > this.limits.maxLines) this.fail('multi-line reply has too many lines');
    if (this.bytes > this.limits.maxReplyBytes) this.fail('multi-line reply too large');
    this.lines.push(end - start > 4 ? buf.toString('utf8', start + 4, end) : '');
    if (!last) return undefined;
    const r = makeReply(code, this.lines);
    this.lines = [];
    this.bytes = 0;
    return r;
  }

  private fail(msg: string): never {
    this.dead = new ReplyProtocolError(msg);
    this.partial = undefined;
    this.lines = [];
    throw this.dead;
  }
}
