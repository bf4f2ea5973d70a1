// Delivery status notifications (RFC 3464 inside RFC 6522 multipart/report), built as one RFC
// 5322 message ready to be queued with MAIL FROM:<>. Pure: time and randomness are inputs.
// Also the rule deciding whether a notification is due (RFC 3461 NOTIFY, never to <>).
// Invariants: CRLF line ends throughout; no line we write is longer than 998 octets (long fields
// and text are folded); the boundary never occurs in the returned content; header fields are
// ASCII; non-ASCII addresses switch to the RFC 6533 forms ("utf-8" address
// type, message/global-delivery-status and message/global), and an original returned whole whose
// header fields are 8-bit is a message/global; SMTPUTF8 is asked for only when the return path
// is UTF-8 (the report's header fields and envelope are ASCII otherwise). Never throws for valid
// input.

import { createHash } from 'node:crypto';
import type { NotifyFlag } from '../smtp/client/params.js';
import { rfc5322Date } from '../smtp/protocol/date.js';

export type DsnAction = 'failed' | 'delayed' | 'delivered' | 'relayed' | 'expanded';
export type DsnKind = 'failure' | 'delay' | 'success';

export interface DsnRecipientReport {
  /** The address we tried (Final-Recipient). */
  address: string;
  /** Decoded ORCPT, "addr-type;address". */
  orcpt?: string;
  action: DsnAction;
  /** x.y.z */
  status: string;
  /** Host name of the remote MTA that gave the diagnostic. */
  remoteMta?: string;
  /** e.g. "smtp; 550 5.1.1 <u@example.org>: user unknown". */
  diagnostic?: string;
  lastAttempt?: number;
  willRetryUntil?: number;
}

export interface DsnInput {
  /** Our host name: Reporting-MTA and the MAILER-DAEMON domain. */
  reportingMta: string;
  /** Return path of the original message; the report goes there. */
  returnPath: string;
  envid?: string;
  ret?: 'FULL' | 'HDRS';
  /** Arrival time of the original message, ms since the epoch. */
  arrivalDate: number;
  recipients: DsnRecipientReport[];
  /** The original message as stored, or only its beginning (see originalSize). */
  original: readonly Buffer[];
  /**
   * Size of the whole original when `original` may be only its beginning (the queue passes at
   * most 1 MiB): a message not given whole is returned as its headers, whatever RET says.
   */
  originalSize?: number;
  /** Now, ms since the epoch. */
  now: number;
  /** Uniform in [0,1) for Message-ID and boundary; default Math.random. */
  random?: () => number;
  /** Without RET, return the whole message of a failure report up to this size (default 100 000). */
  maxFullSize?: number;
  /** Name of the sending host of the original, if known (Received-From-MTA). */
  receivedFromMta?: string;
}

export interface DsnMessage {
  data: Buffer;
  messageId: string;
  kind: DsnKind;
  /** The report contains 8-bit bytes: send with BODY=8BITMIME. */
  body8bit: boolean;
  /**
   * The report goes to a UTF-8 return path: send with SMTPUTF8. UTF-8 recipient addresses alone
   * do not need it: they are inside the message/global-* parts (RFC 6532/6533), whose content
   * may be encoded for any host, while the report's own header fields and envelope are ASCII.
   */
  smtputf8: boolean;
}

/**
 * Whether a notification of `kind` is due (RFC 3461 §4.1): the one NOTIFY rule, used by the
 * queue's report policy (reports.ts). Never to the null sender; NOTIFY=NEVER gets nothing;
 * without NOTIFY (absent or an empty list: the same thing), failures are reported and delays
 * only if `delayByDefault` (our default policy: false, so delay warnings need NOTIFY=DELAY);
 * success only when requested.
 */
export function shouldNotify(
  sender: string,
  kind: DsnKind,
  notify: readonly (NotifyFlag | string)[] | undefined,
  opts: { delayByDefault?: boolean } = {},
): boolean {
  if (sender === '') return false;
  if (notify === undefined || notify.length === 0) {
    return kind === 'failure' || (kind === 'delay' && opts.delayByDefault === true);
  }
  if (notify.includes('NEVER')) return false;
  if (kind === 'failure') return notify.includes('FAILURE');
  if (kind === 'delay') return notify.includes('DELAY');
  return notify.includes('SUCCESS');
}

function kindOf(recipients: readonly DsnRecipientReport[]): DsnKind {
  if (recipients.some((r) => r.action === 'failed')) return 'failure';
  if (recipients.some((r) => r.action === 'delayed')) return 'delay';
  return 'success';
}

const SUBJECTS: Record<DsnKind, string> = {
  failure: 'Undelivered Mail Returned to Sender',
  delay: 'Delayed Mail (still being retried)',
  success: 'Successful Mail Delivery Report',
};

function isAscii(s: string): boolean {
  return !/[^\x00-\x7f]/.test(s);
}

/** Removes CR/LF so a value cannot start a new field. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

function token(random: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += Math.floor(random() * 36).toString(36);
  return s;
}

/** The header section of a message: everything up to and including the empty line (or all of it). */
function headerSection(original: readonly Buffer[]): Buffer {
  const all = Buffer.concat(original);
  const end = all.indexOf('\r\n\r\n');
  if (end >= 0) return all.subarray(0, end + 2);
  const lf = all.indexOf('\n\n');
  return lf >= 0 ? all.subarray(0, lf + 1) : all;
}

function has8bit(bufs: readonly Buffer[]): boolean {
  for (const b of bufs) for (let i = 0; i < b.length; i++) if ((b[i] ?? 0) > 127) return true;
  return false;
}

function humanText(input: DsnInput, kind: DsnKind): string {
  const lines: string[] = [`This is the mail system at host ${input.reportingMta}.`, ''];
  if (kind === 'failure') {
    lines.push(
      "I'm sorry to have to inform you that your message could not",
      'be delivered to one or more recipients. It is attached below.',
    );
  } else if (kind === 'delay') {
    lines.push(
      'Your message could not be delivered yet to the recipients below.',
      'It will be retried until',
    );
    const until = input.recipients.find((r) => r.willRetryUntil !== undefined)?.willRetryUntil;
    lines[lines.length - 1] += until === undefined ? ' it expires.' : ` ${rfc5322Date(until)}.`;
    lines.push('You do not have to send it again.');
  } else {
    lines.push('Your message was successfully delivered to the recipients below.');
  }
  lines.push('');
  for (const r of input.recipients) {
    const diag = r.diagnostic ? `: ${r.diagnostic.replace(/^[^;]*;\s*/, '')}` : '';
    const via = r.remoteMta ? ` (host ${r.remoteMta})` : '';
    lines.push(`<${r.address}>${via}: ${r.action}, status ${r.status}${diag}`);
  }
  return lines.map((l) => fold(oneLine(l))).join('\r\n') + '\r\n';
}

/** Characters of a run without spaces that fold() keeps on one line (at most 4 octets each). */
const LONG_RUN = 200;

/**
 * Folds a field or a line of text before its spaces (RFC 5322 §2.2.3) so that lines stay near 78
 * characters and never pass the 998-octet limit of SMTP: a peer's reply may be 64 KiB joined on
 * one line. A run without spaces longer than LONG_RUN is broken too, which adds a space to the
 * value there (diagnostic text, never an address that short).
 */
function fold(line: string): string {
  if (line.length <= 78) return line;
  const parts: string[] = [];
  for (const w of line.split(' '))
    for (let i = 0; i < Math.max(1, w.length); i += LONG_RUN) parts.push(w.slice(i, i + LONG_RUN));
  let out = parts[0] ?? '';
  let width = out.length;
  for (const p of parts.slice(1)) {
    // Never before an empty part: a continuation line of white space alone is obsolete syntax.
    if (p !== '' && width + 1 + p.length > 78) {
      out += `\r\n ${p}`;
      width = 1 + p.length;
    } else {
      out += ` ${p}`;
      width += 1 + p.length;
    }
  }
  return out;
}

function addressField(name: string, typed: string): string {
  return `${name}: ${oneLine(typed)}`;
}

/** message/delivery-status is ASCII: replace anything else (e.g. in a remote diagnostic). */
function toAscii(s: string): string {
  return s.replace(/[^\x00-\x7f]/g, '?');
}

function statusFields(input: DsnInput, utf8: boolean): string {
  const f: string[] = [`Reporting-MTA: dns; ${oneLine(input.reportingMta)}`];
  if (input.envid !== undefined) f.push(`Original-Envelope-Id: ${oneLine(input.envid)}`);
  if (input.receivedFromMta !== undefined)
    f.push(`Received-From-MTA: dns; ${oneLine(input.receivedFromMta)}`);
  f.push(`Arrival-Date: ${rfc5322Date(input.arrivalDate)}`);
  const blocks = [f.map(fold).join('\r\n')];
  for (const r of input.recipients) {
    const g: string[] = [];
    if (r.orcpt !== undefined) g.push(addressField('Original-Recipient', r.orcpt));
    g.push(
      addressField('Final-Recipient', `${utf8 && !isAscii(r.address) ? 'utf-8' : 'rfc822'}; ${r.address}`),
    );
    g.push(`Action: ${r.action}`, `Status: ${r.status}`);
    if (r.remoteMta !== undefined) g.push(`Remote-MTA: dns; ${oneLine(r.remoteMta)}`);
    if (r.diagnostic !== undefined) g.push(`Diagnostic-Code: ${oneLine(r.diagnostic)}`);
    if (r.lastAttempt !== undefined) g.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttempt)}`);
    if (r.willRetryUntil !== undefined && r.action === 'delayed') {
      g.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    }
    blocks.push(g.map(fold).join('\r\n'));
  }
  const out = blocks.join('\r\n\r\n') + '\r\n';
  return utf8 ? out : toAscii(out);
}

export function buildDsn(input: DsnInput): DsnMessage {
  const random = input.random ?? Math.random;
  const kind = kindOf(input.recipients);
  const host = input.reportingMta;
  const utf8 =
    !isAscii(input.returnPath) ||
    input.recipients.some((r) => !isAscii(r.address) || (r.orcpt !== undefined && !isAscii(r.orcpt)));

  // What to return: the whole message for failures when RET=FULL (or no RET and small enough),
  // the headers otherwise (RFC 3461 §4.3 leaves the default to us).
  const have = input.original.reduce((a, b) => a + b.length, 0);
  const size = Math.max(have, input.originalSize ?? have);
  const full =
    kind === 'failure' &&
    have >= size &&
    (input.ret === 'FULL' || (input.ret === undefined && size <= (input.maxFullSize ?? 100_000)));
  const returned = full ? Buffer.concat(input.original) : headerSection(input.original);
  // An original whose header fields are not ASCII (UTF-8 under SMTPUTF8) is a message/global
  // (RFC 6532 §3.7): unlike message/rfc822 it may be quoted-printable as a whole, so the report
  // still reaches a sender's host without 8BITMIME. Its header section alone is text, which may
  // be encoded anyway.
  const returnedType = full
    ? utf8 || has8bit([headerSection(input.original)])
      ? 'message/global'
      : 'message/rfc822'
    : utf8
      ? 'message/global-headers'
      : 'text/rfc822-headers';

  let boundary = `${token(random, 12)}/${host}`;
  while (returned.includes(`--${boundary}`)) boundary = `${token(random, 16)}/${host}`;
  const stamp = createHash('sha256')
    .update(`${input.now}.${token(random, 16)}`)
    .digest('hex')
    .slice(0, 20);
  const messageId = `<${stamp}.dsn@${host}>`;
  const to = input.returnPath;

  const text = humanText(input, kind);
  const status = statusFields(input, utf8);
  const eight = utf8 || !isAscii(text) || !isAscii(status) || has8bit([returned]);
  const head =
    [
      `From: Mail Delivery System <MAILER-DAEMON@${host}>`,
      `To: <${oneLine(to)}>`,
      `Subject: ${SUBJECTS[kind]}`,
      `Date: ${rfc5322Date(input.now)}`,
      `Message-ID: ${messageId}`,
      'Auto-Submitted: auto-replied',
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="${boundary}"`,
      `Content-Transfer-Encoding: ${eight ? '8bit' : '7bit'}`,
    ].join('\r\n') + '\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n';
  const textPart =
    `--${boundary}\r\nContent-Description: Notification\r\n` +
    `Content-Type: text/plain; charset=${isAscii(text) ? 'us-ascii' : 'utf-8'}\r\n\r\n${text}\r\n`;
  const statusPart =
    `--${boundary}\r\nContent-Description: Delivery report\r\n` +
    `Content-Type: ${utf8 ? 'message/global-delivery-status' : 'message/delivery-status'}\r\n\r\n` +
    `${status}\r\n`;
  const origHead =
    `--${boundary}\r\nContent-Description: ${full ? 'Undelivered Message' : 'Message Headers'}\r\n` +
    `Content-Type: ${returnedType}\r\n\r\n`;
  const endsWithCrlf = returned.length >= 2 && returned[returned.length - 2] === 13 && returned.at(-1) === 10;
  const tail = `${endsWithCrlf ? '' : '\r\n'}\r\n--${boundary}--\r\n`;
  const data = Buffer.concat([
    Buffer.from(head + textPart + statusPart + origHead, 'utf8'),
    returned,
    Buffer.from(tail, 'utf8'),
  ]);
  return { data, messageId, kind, body8bit: eight, smtputf8: !isAscii(to) };
}
