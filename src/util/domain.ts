// The one grammar of domain names in logmta, and of the domain part of an address: what the
// configuration accepts as a mail domain (config/values.ts), what a host name may be
// (config/net.ts), what the queue must be able to name a held lane after (queue/log/segment.ts),
// what RFC 5321 calls a Domain in MAIL/RCPT (smtp/protocol/address.ts), what ETRN and ATRN
// name (odmr/), what the DNS client asks for (dns/client.ts). Sharing it means the validator
// can never accept a domain the queue cannot store, nor ETRN one the configuration cannot name.
// One label rule (LDH: letters, digits, inner hyphens, 1–63 characters); a host name may also
// have labels starting with "_" (service names such as `_branch`); at most 253 characters
// without the trailing dot. A mail domain: a host name in lower case, without the trailing dot,
// not starting with "_". An RFC 5321 Domain: LDH labels only (U-labels too under SMTPUTF8), at
// most 255 octets. Pure functions; nothing here throws.

const LDH_LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;
const UNDERSCORE_LABEL = /^_[a-z0-9-]{0,62}$/i;
/** An LDH label or a U-label (RFC 5890): non-ASCII allowed where a letter or digit may stand. */
const U_LABEL =
  /^(?:[A-Za-z0-9]|[^\x00-\x7f])(?:(?:[A-Za-z0-9-]|[^\x00-\x7f])*(?:[A-Za-z0-9]|[^\x00-\x7f]))?$/u;
const NON_ASCII = /[^\x00-\x7f]/;

/** The longest domain name (RFC 1035: 255 octets on the wire, 253 characters written). */
export const MAX_DOMAIN_LENGTH = 253;
/** The longest label (RFC 1035 §2.3.4). */
export const MAX_LABEL_LENGTH = 63;
/** The longest Domain of an SMTP path (RFC 5321 §4.5.3.1.2), in octets. */
const MAX_SMTP_DOMAIN_OCTETS = 255;

function octets(s: string): number {
  return NON_ASCII.test(s) ? Buffer.byteLength(s, 'utf8') : s.length;
}

/** Whether `s` is a host name (a trailing dot allowed, any case). */
export function isHostName(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > MAX_DOMAIN_LENGTH) return false;
  return name.split('.').every((l) => LDH_LABEL.test(l) || UNDERSCORE_LABEL.test(l));
}

/** Whether `d` is a mail domain in its normal form (see normalizeDomain). */
export function isMailDomain(d: string): boolean {
  return isHostName(d) && !d.endsWith('.') && !d.startsWith('_') && d === d.toLowerCase();
}

/** A mail domain in its normal form (trimmed, lower case, no trailing dot), or undefined. */
export function normalizeDomain(s: string): string | undefined {
  const d = s.trim().toLowerCase().replace(/\.$/, '');
  return isMailDomain(d) ? d : undefined;
}

/**
 * An RFC 5321 Domain as written in a path (no trailing dot, any case): dot-separated LDH
 * labels — or, with `utf8` (SMTPUTF8, RFC 6531), U-labels — of at most 63 octets, at most 255
 * octets in all.
 */
export function isSmtpDomain(d: string, utf8 = false): boolean {
  if (d.length === 0 || octets(d) > MAX_SMTP_DOMAIN_OCTETS) return false;
  const re = utf8 ? U_LABEL : LDH_LABEL;
  for (const l of d.split('.')) if (!re.test(l) || octets(l) > MAX_LABEL_LENGTH) return false;
  return true;
}

/** Whether `domain` is `parent` or below it (both in normal form). */
export function isAtOrBelow(domain: string, parent: string): boolean {
  return domain === parent || domain.endsWith(`.${parent}`);
}

/**
 * The domain of an address as logmta compares it: what follows the last "@", in lower case,
 * without a trailing dot; "" for an address without "@" (the bare <postmaster>).
 */
export function domainOf(address: string): string {
  const at = address.lastIndexOf('@');
  return (at < 0 ? '' : address.slice(at + 1)).toLowerCase().replace(/\.$/, '');
}

/**
 * What makes two recipient addresses the same recipient: the local part as given (it may be
 * case-sensitive, RFC 5321 §2.4) and the domain as domainOf compares it.
 */
export function addressKey(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : `${address.slice(0, at)}@${domainOf(address)}`;
}

/** The local part of an address: what precedes the last "@" (the whole address without one). */
export function localPartOf(address: string): string {
  const at = address.lastIndexOf('@');
  return at < 0 ? address : address.slice(0, at);
}
