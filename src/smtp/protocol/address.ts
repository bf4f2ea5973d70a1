// Mailbox and path syntax (RFC 5321 4.1.2, 4.1.3; SMTPUTF8 extensions RFC 6531 3.3).
//   Path      = "<" [ A-d-l ":" ] Mailbox ">"       (A-d-l: obsolete source route, @a,@b)
//   Mailbox   = Local-part "@" ( Domain / address-literal )
//   Local-part= Dot-string / Quoted-string
// Invariants: a returned address is syntactically valid, its local part at most 64 octets, its
// domain at most 255, the whole path at most 256. Source routes are accepted and stripped
// (RFC 5321 appendix C) and reported in `sourceRoute`. Non-ASCII is accepted only when `utf8`
// (the transaction used SMTPUTF8); otherwise such an address is reported as `needsUtf8` so the
// caller can answer 553 5.6.7 instead of a plain syntax error.
// Pure; errors are returned as values, never thrown.

import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import { isSmtpDomain } from '../../util/domain.js';
import { isDotString } from '../../util/local-part.js';

export interface ParsedPath {
  /** The mailbox without angle brackets or source route; '' for the null path <>. */
  address: string;
  /** Domains of a stripped source route, in order, without "@". */
  sourceRoute?: string[];
}

export type PathResult =
  | { ok: true; path: ParsedPath /** index just past ">" */; end: number }
  | { ok: false; error: 'syntax' | 'needsUtf8' | 'null' | 'tooLong' };

export interface PathOptions {
  /** Accept <> (MAIL FROM only). */
  allowNull?: boolean;
  /** Accept <Postmaster> without a domain (RCPT TO only, RFC 5321 4.1.1.3). */
  allowPostmaster?: boolean;
  /** SMTPUTF8 in effect: UTF-8 in local part and domain is allowed. */
  utf8?: boolean;
}

const NON_ASCII = /[^\x00-\x7f]/;
const GENERAL_LITERAL = /^[A-Za-z0-9-]*[A-Za-z0-9]:[\x21-\x5a\x5e-\x7e]+$/;

function octets(s: string): number {
  return NON_ASCII.test(s) ? Buffer.byteLength(s, 'utf8') : s.length;
}

/** RFC 5321 address-literal: [1.2.3.4], [IPv6:...], or a general literal tag:content. */
export function isValidAddressLiteral(lit: string): boolean {
  if (lit.length < 3 || lit[0] !== '[' || lit[lit.length - 1] !== ']') return false;
  const inner = lit.slice(1, -1);
  if (isIP(inner) === 4) return true;
  if (inner.slice(0, 5).toUpperCase() === 'IPV6:') return isIP(inner.slice(5)) === 6;
  if (/^\d+(\.\d+){3}$/.test(inner)) return false; // looks like IPv4 but is not valid
  return GENERAL_LITERAL.test(inner);
}

function isValidQuotedString(q: string, utf8: boolean): boolean {
  if (q.length < 2 || q[0] !== '"' || q[q.length - 1] !== '"') return false;
  for (let i = 1; i < q.length - 1; i++) {
    const c = q.charCodeAt(i);
    if (c === 92) {
      const n = q.charCodeAt(i + 1);
      if (i + 1 >= q.length - 1 || n < 32 || n > 126) return false;
      i++;
    } else if (c === 34) {
      return false;
    } else if (c < 32 || c === 127 || (c > 127 && !utf8)) {
      return false;
    }
  }
  return true;
}

/** Split a mailbox at the "@" that separates local part and domain (the last one outside quotes). */
function splitMailbox(m: string): [string, string] | null {
  let at = -1;
  if (m[0] === '"') {
    // Find the closing quote, honouring backslash escapes.
    let i = 1;
    for (; i < m.length; i++) {
      if (m[i] === '\\') i++;
      else if (m[i] === '"') break;
    }
    if (m[i + 1] !== '@') return null;
    at = i + 1;
  } else {
    at = m.lastIndexOf('@');
  }
  if (at <= 0) return null;
  return [m.slice(0, at), m.slice(at + 1)];
}

export type MailboxCheck = 'ok' | 'syntax' | 'needsUtf8' | 'tooLong';

/** Check a bare mailbox (no angle brackets). */
export function checkMailbox(m: string, utf8 = false): MailboxCheck {
  const parts = splitMailbox(m);
  if (parts === null) return 'syntax';
  const [local, domain] = parts;
  if (!utf8 && NON_ASCII.test(m)) {
    return checkMailbox(m, true) === 'ok' ? 'needsUtf8' : 'syntax';
  }
  if (local[0] === '"') {
    if (!isValidQuotedString(local, utf8)) return 'syntax';
  } else {
    if (!isDotString(local, utf8)) return 'syntax';
  }
  if (domain[0] === '[') {
    if (!isValidAddressLiteral(domain)) return 'syntax';
  } else if (!isSmtpDomain(domain, utf8)) {
    return 'syntax';
  }
  if (octets(local) > 64 || octets(domain) > 255) return 'tooLong';
  return 'ok';
}

/**
 * Parse a Path starting at s[pos] (which must be "<"). Returns the mailbox and the index after ">".
 * Used for the argument of MAIL FROM: and RCPT TO:.
 */
export function parsePath(s: string, pos: number, opts: PathOptions = {}): PathResult {
  if (s[pos] !== '<') return { ok: false, error: 'syntax' };
  // Find the closing ">" outside a quoted string.
  let i = pos + 1;
  let inQuote = false;
  for (; i < s.length; i++) {
    const ch = s[i];
    if (inQuote) {
      if (ch === '\\') i++;
      else if (ch === '"') inQuote = false;
    } else if (ch === '"') {
      inQuote = true;
    } else if (ch === '>') {
      break;
    } else if (ch === '<' || ch === ' ') {
      return { ok: false, error: 'syntax' };
    }
  }
  if (i >= s.length) return { ok: false, error: 'syntax' };
  const end = i + 1;
  let inner = s.slice(pos + 1, i);
  if (inner.length === 0) {
    return opts.allowNull ? { ok: true, path: { address: '' }, end } : { ok: false, error: 'null' };
  }
  if (octets(inner) > 256) return { ok: false, error: 'tooLong' };
  let sourceRoute: string[] | undefined;
  if (inner[0] === '@') {
    const colon = inner.indexOf(':');
    if (colon === -1) return { ok: false, error: 'syntax' };
    sourceRoute = [];
    for (const hop of inner.slice(0, colon).split(',')) {
      const d = hop.slice(1);
      if (hop[0] !== '@' || !(isSmtpDomain(d, opts.utf8) || isValidAddressLiteral(d))) {
        return { ok: false, error: 'syntax' };
      }
      sourceRoute.push(d);
    }
    inner = inner.slice(colon + 1);
  }
  if (opts.allowPostmaster && inner.toLowerCase() === 'postmaster') {
    return { ok: true, path: sourceRoute ? { address: inner, sourceRoute } : { address: inner }, end };
  }
  const check = checkMailbox(inner, opts.utf8);
  if (check !== 'ok') return { ok: false, error: check };
  return { ok: true, path: sourceRoute ? { address: inner, sourceRoute } : { address: inner }, end };
}

/**
 * The address with its domain in A-labels ("hans@müller.test" → "hans@xn--mller-kva.test"):
 * RFC 6531 lets an SMTPUTF8 client write a domain either way, and the configuration, routing
 * and DNS use A-labels. ASCII domains and address literals come back unchanged; undefined
 * when a non-ASCII domain is not a valid IDN (UTS #46).
 */
export function withAsciiDomain(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  if (at < 0) return address;
  const domain = address.slice(at + 1);
  if (!NON_ASCII.test(domain)) return address;
  const ascii = domainToASCII(domain);
  return ascii === '' ? undefined : `${address.slice(0, at + 1)}${ascii}`;
}
