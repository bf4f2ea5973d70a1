// Our Received: trace field (RFC 5321 4.4, RFC 5322 3.6.7), with the with-protocol names of
// RFC 3848 (ESMTPS/ESMTPA/ESMTPSA) and RFC 6531 (UTF8SMTP...).
// Invariant: the result is a syntactically valid, folded header ending in CRLF; client-supplied
// text (the HELO name) is sanitised so it cannot break the header or inject lines, and the header
// is ASCII unless the transaction is SMTPUTF8.
// Pure; never throws.

import { rfc5322Date } from '../protocol/date.js';
import type { ClientInfo } from './hooks.js';

const UNSAFE_UTF8 = /[^\x21-\x27\x2a-\x5b\x5d-\x7e\u0080-\uffff]/g;
const UNSAFE_ASCII = /[^\x21-\x27\x2a-\x5b\x5d-\x7e]/g;

/**
 * Make client-supplied text safe inside a header comment or token. Non-ASCII survives only in
 * an SMTPUTF8 message (RFC 6532): elsewhere an 8-bit header would travel in a message the client
 * declared 7-bit or 8BITMIME, which a next hop may refuse.
 */
function sanitise(s: string, max = 255, utf8 = false): string {
  const clean = s.replace(utf8 ? UNSAFE_UTF8 : UNSAFE_ASCII, '?');
  return clean.length > max ? clean.slice(0, max) : clean;
}

/** RFC 3848 / RFC 6531 with-protocol keyword. */
export function withProtocol(esmtp: boolean, tls: boolean, auth: boolean, utf8: boolean): string {
  if (!esmtp) return 'SMTP';
  return (utf8 ? 'UTF8SMTP' : 'ESMTP') + (tls ? 'S' : '') + (auth ? 'A' : '');
}

export interface ReceivedParams {
  hostname: string;
  client: ClientInfo;
  esmtp: boolean;
  smtputf8: boolean;
  id: string;
  /** The single recipient, if there is exactly one ("for" clause). */
  recipient?: string;
  date: number;
}

export function receivedHeader(p: ReceivedParams): string {
  const c = p.client;
  const ipLit = c.ip.includes(':') ? `IPv6:${c.ip}` : c.ip;
  const u = p.smtputf8;
  let h = `Received: from ${sanitise(c.helo ?? 'unknown', 255, u)} ([${ipLit}])\r\n`;
  if (c.tls) h += `\t(using ${sanitise(c.tls.protocol, 32)} with cipher ${sanitise(c.tls.cipher, 64)})\r\n`;
  if (c.auth !== undefined) h += `\t(authenticated sender: ${sanitise(c.auth, 255, u)})\r\n`;
  h += `\tby ${p.hostname} (logmta) with ${withProtocol(p.esmtp, !!c.tls, c.auth !== undefined, p.smtputf8)}`;
  h += ` id ${p.id}`;
  if (p.recipient !== undefined) h += `\r\n\tfor <${sanitise(p.recipient, 320, u)}>`;
  h += `; ${rfc5322Date(p.date)}\r\n`;
  return h;
}
