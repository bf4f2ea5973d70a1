// SMTP reply values and their two written forms (RFC 5321 4.2, enhanced status codes RFC
// 2034/3463): the wire form a server sends (formatReply) and the one-line form logs, errors and
// DSN Diagnostic-Code fields quote a reply in, ours or a peer's (describeReply).
// Invariant: every formatted reply is one or more lines "ddd-text" ... "ddd text", each ending in
// CRLF; when an enhanced code is given it prefixes every line (RFC 2034 section 4). Text is
// sanitised: embedded CR/LF never reach the wire (a hook's text cannot inject extra replies), and
// no line is longer than 512 octets with its CRLF (RFC 5321 4.5.3.1.5; longer text is cut).
// Pure; never throws for well-typed input (a code outside 200..599 is a programming error and throws
// a TypeError).

export interface SmtpReply {
  /** Three-digit reply code. */
  code: number;
  /** Enhanced status code "c.s.d" without the reply code, e.g. "5.1.1". */
  enhanced?: string;
  /** One line, or several for a multi-line reply. */
  text: string | readonly string[];
}

const CRLF_IN_TEXT = /[\r\n]+/g;
/** RFC 5321 4.5.3.1.5: a reply line, code and CRLF included, is at most 512 octets. */
const MAX_REPLY_LINE = 512;

/** `head` + the text of one line, without CR/LF and cut so that the line with CRLF fits. */
function line(head: string, text: string): string {
  const t = text.indexOf('\r') === -1 && text.indexOf('\n') === -1 ? text : text.replace(CRLF_IN_TEXT, ' ');
  const out = head + t;
  // Octets are at most 3 per UTF-16 unit: short lines need no measuring.
  if (out.length * 3 <= MAX_REPLY_LINE - 2 || Buffer.byteLength(out) <= MAX_REPLY_LINE - 2) return out;
  // An echoed client name (EHLO) or a hook's long text: cut, on a character boundary.
  const cut = Buffer.from(out)
    .subarray(0, MAX_REPLY_LINE - 2)
    .toString('utf8');
  return cut.endsWith('\uFFFD') ? cut.replace(/\uFFFD+$/, '') : cut;
}

/** The wire form of a reply, CRLF-terminated, ready to be written. */
export function formatReply(reply: SmtpReply): string {
  const { code } = reply;
  if (!Number.isInteger(code) || code < 200 || code > 599) throw new TypeError(`bad SMTP reply code ${code}`);
  const prefix = reply.enhanced === undefined ? '' : reply.enhanced + ' ';
  const lines = typeof reply.text === 'string' ? [reply.text] : reply.text;
  if (lines.length <= 1) return `${line(`${code} ${prefix}`, lines[0] ?? '')}\r\n`;
  let out = '';
  const last = lines.length - 1;
  for (let i = 0; i < lines.length; i++) {
    out += `${line(`${code}${i === last ? ' ' : '-'}${prefix}`, lines[i] as string)}\r\n`;
  }
  return out;
}

/** "550 5.1.1 text": a reply on one line (enhanced code and text only when present). */
export function describeReply(r: { code: number; enhanced?: string | undefined; text: string }): string {
  return `${r.code}${r.enhanced ? ' ' + r.enhanced : ''}${r.text ? ' ' + r.text : ''}`;
}

/** Shorthand constructor. */
export function reply(
  code: number,
  enhanced: string | undefined,
  text: string | readonly string[],
): SmtpReply {
  return enhanced === undefined ? { code, text } : { code, enhanced, text };
}
