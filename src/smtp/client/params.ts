// Formatting of the client's MAIL FROM and RCPT TO command lines with their ESMTP parameters
// (SIZE RFC 1870, BODY RFC 6152, SMTPUTF8 RFC 6531, DSN RFC 3461 with xtext). Pure.
// Invariant: a parameter is only added when the peer offered its extension, and no line built here
// can contain CR, LF or a stray angle bracket (isSafeAddress is checked by the caller first).

import type { Extensions } from './extensions.js';
import { encodeXtext } from '../protocol/xtext.js';

export type NotifyFlag = 'NEVER' | 'SUCCESS' | 'FAILURE' | 'DELAY';

export interface OutboundRecipient {
  address: string;
  /** NOTIFY flags as given by the original client; undefined = no NOTIFY parameter. */
  notify?: NotifyFlag[];
  /** Decoded ORCPT value, "addr-type;address" (e.g. "rfc822;user@example.org"). */
  orcpt?: string;
}

export interface MailOptions {
  sender: string;
  size: number;
  body8bit?: boolean;
  /** BODY=BINARYMIME; the caller checked the peer offers it (and sends with BDAT). */
  binary?: boolean;
  smtputf8?: boolean;
  ret?: 'FULL' | 'HDRS';
  /** Decoded ENVID. */
  envid?: string;
}

export function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return false;
  return true;
}

/** True when an address can be put between angle brackets on a command line. */
export function isSafeAddress(s: string): boolean {
  return !/[\r\n<>\0]/.test(s) && s.length <= 1000;
}

export function mailFromLine(o: MailOptions, ext: Extensions): string {
  let line = `MAIL FROM:<${o.sender}>`;
  if (ext.size !== undefined) line += ` SIZE=${o.size}`;
  if (o.binary && ext.binaryMime) line += ' BODY=BINARYMIME';
  else if (o.body8bit && ext.eightBitMime) line += ' BODY=8BITMIME';
  if (o.smtputf8 && ext.smtputf8) line += ' SMTPUTF8';
  if (ext.dsn) {
    if (o.ret) line += ` RET=${o.ret}`;
    if (o.envid !== undefined && o.envid.length > 0) line += ` ENVID=${encodeXtext(o.envid)}`;
  }
  return line + '\r\n';
}

export function rcptToLine(r: OutboundRecipient, ext: Extensions): string {
  let line = `RCPT TO:<${r.address}>`;
  if (ext.dsn) {
    if (r.notify && r.notify.length > 0) line += ` NOTIFY=${r.notify.join(',')}`;
    if (r.orcpt !== undefined) {
      const semi = r.orcpt.indexOf(';');
      if (semi > 0) line += ` ORCPT=${r.orcpt.slice(0, semi)};${encodeXtext(r.orcpt.slice(semi + 1))}`;
    }
  }
  return line + '\r\n';
}
