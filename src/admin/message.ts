// What a local sendmail does to a message before queueing it, as pure functions: line ends to
// CRLF, the lone "." that ends input (unless -i), a leading mbox "From " line dropped, recipients taken from To/Cc/Bcc (-t), Bcc
// removed, and Date / Message-ID / From added when missing (RFC 5322 3.6 requires Date and
// From; Message-ID is a SHOULD that every MTA fills in for local submissions).
// Invariant: header fields other than Bcc are passed through byte for byte (only line ends
// change); the body is never touched except for line ends. Never throws.

import { isDotString } from '../util/local-part.js';

export interface HeaderField {
  /** Field name as written. */
  name: string;
  /** The whole field, folded lines included, without the final CRLF. */
  raw: string;
}

export interface ParsedMessage {
  fields: HeaderField[];
  /** Everything after the header block (without the empty separator line). */
  body: string;
  /** False when the input had no header block: the body starts at once. */
  hadSeparator: boolean;
}

/** LF or CRLF → CRLF; without `ignoreDots`, a line holding only "." ends the message. */
export function normalizeInput(text: string, ignoreDots: boolean): string {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const out: string[] = [];
  for (const l of lines) {
    if (!ignoreDots && l === '.') break;
    out.push(l);
  }
  return out.length === 0 ? '' : `${out.join('\r\n')}\r\n`;
}

/**
 * Drops a first line that is an mbox "From " separator ("From sender date", as git
 * format-patch files and formail output begin): no header field, so it would otherwise end the
 * header block and turn every field after it into body. Postfix's sendmail and sendmail 8 skip
 * it too. Takes and returns CRLF text.
 */
export function dropMboxFrom(msg: string): string {
  if (!msg.startsWith('From ')) return msg;
  const eol = msg.indexOf('\r\n');
  return eol < 0 ? '' : msg.slice(eol + 2);
}

/** The start of a header field line: its name and the colon. */
export const FIELD_START = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/;

/** Splits a CRLF message into header fields and body. */
export function parseMessage(msg: string): ParsedMessage {
  const fields: HeaderField[] = [];
  let pos = 0;
  let hadSeparator = false;
  while (pos < msg.length) {
    const eol = msg.indexOf('\r\n', pos);
    const end = eol < 0 ? msg.length : eol;
    const line = msg.slice(pos, end);
    const next = eol < 0 ? msg.length : eol + 2;
    if (line === '') {
      hadSeparator = true;
      pos = next;
      break;
    }
    const last = fields[fields.length - 1];
    if ((line.startsWith(' ') || line.startsWith('\t')) && last) {
      last.raw += `\r\n${line}`;
    } else {
      const m = FIELD_START.exec(line);
      if (!m) break; // not a header: the body starts here
      fields.push({ name: m[1]!, raw: line });
    }
    pos = next;
  }
  return { fields, body: msg.slice(pos), hadSeparator };
}

function fieldValue(f: HeaderField): string {
  return f.raw.slice(f.raw.indexOf(':') + 1).replace(/\r\n[ \t]/g, ' ');
}

function has(fields: readonly HeaderField[], name: string): boolean {
  return fields.some((f) => f.name.toLowerCase() === name);
}

export interface AddressListOptions {
  /** Keep user names without a domain ("root", an RFC 5322 dot-atom); the caller completes them (sendmail). */
  bareNames?: boolean;
}

/**
 * The addr-specs of an RFC 5322 address-list: "Name <a@b>", bare a@b, groups "g: a@b, c@d;",
 * quoted strings and comments skipped. Lenient: what does not look like an address is dropped.
 */
export function parseAddressList(value: string, opts: AddressListOptions = {}): string[] {
  const out: string[] = [];
  let cur = '';
  let angle: string | undefined;
  let inAngle = false;
  const flush = () => {
    const a = (angle ?? cur).trim();
    if (a.includes('@') ? !/\s/.test(a) : opts.bareNames === true && isDotString(a)) out.push(a);
    cur = '';
    angle = undefined;
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '"') {
      // quoted string: a display name (or a quoted local part inside <> or a bare address)
      let j = i + 1;
      let q = '"';
      while (j < value.length && value[j] !== '"') {
        if (value[j] === '\\') j++;
        q += value[j] ?? '';
        j++;
      }
      q += '"';
      if (inAngle) angle = (angle ?? '') + q;
      else cur += q;
      i = j;
    } else if (c === '(') {
      let depth = 1;
      let j = i + 1;
      for (; j < value.length && depth > 0; j++) {
        if (value[j] === '\\') j++;
        else if (value[j] === '(') depth++;
        else if (value[j] === ')') depth--;
      }
      i = j - 1;
    } else if (c === '<') {
      inAngle = true;
      angle = '';
    } else if (c === '>') {
      inAngle = false;
    } else if (inAngle) {
      angle += c;
    } else if (c === ':') {
      cur = ''; // a group's display name
    } else if (c === ',' || c === ';') {
      flush();
    } else {
      cur += c;
    }
  }
  flush();
  return out.map((a) => a.replace(/^@[^:]*:/, '')); // drop an obsolete source route
}

/** Envelope recipients from To, Cc and Bcc (sendmail -t), duplicates removed (case-insensitive). */
export function recipientsFromHeaders(
  fields: readonly HeaderField[],
  opts: AddressListOptions = {},
): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const f of fields) {
    const n = f.name.toLowerCase();
    if (n !== 'to' && n !== 'cc' && n !== 'bcc') continue;
    for (const a of parseAddressList(fieldValue(f), opts)) {
      if (seen.has(a.toLowerCase())) continue;
      seen.add(a.toLowerCase());
      out.push(a);
    }
  }
  return out;
}

export interface CompleteOptions {
  /** RFC 5322 date for a missing Date:. */
  date: string;
  /** e.g. "<0190ABC.123@host>" for a missing Message-ID:. */
  messageId: string;
  /** Address for a missing From:. */
  from: string;
  /** Full name for a missing From: (sendmail -F). */
  fullName?: string;
  removeBcc: boolean;
}

/** The message to queue: Bcc removed if asked, missing Date/Message-ID/From added at the top. */
export function completeMessage(p: ParsedMessage, o: CompleteOptions): string {
  const fields = o.removeBcc ? p.fields.filter((f) => f.name.toLowerCase() !== 'bcc') : p.fields.slice();
  const added: string[] = [];
  if (!has(fields, 'from')) {
    const name = o.fullName?.replace(/["\\\r\n]/g, '');
    added.push(name ? `From: "${name}" <${o.from}>` : `From: ${o.from}`);
  }
  if (!has(fields, 'date')) added.push(`Date: ${o.date}`);
  if (!has(fields, 'message-id')) added.push(`Message-ID: ${o.messageId}`);
  const head = [...added, ...fields.map((f) => f.raw)];
  return `${head.map((l) => `${l}\r\n`).join('')}\r\n${p.body}`;
}
