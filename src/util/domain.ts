// The one grammar of domain names in logmta: what the configuration accepts as a mail domain
// (config/values.ts), what a host name may be (config/net.ts), and so what the queue must be
// able to name a held lane after (queue/log/segment.ts). Sharing it means the validator can never
// accept a domain the queue cannot store.
// A host name: dot-separated labels of letters, digits and inner hyphens (1–63 characters), or
// labels starting with "_" (service names such as `_branch`); at most 253 characters without
// the trailing dot. A mail domain: a host name in lower case, without the trailing dot, not
// starting with "_". Pure functions.

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;
const UNDERSCORE_LABEL = /^_[a-z0-9-]{0,62}$/i;

/** The longest domain name (RFC 1035: 255 octets on the wire, 253 characters written). */
export const MAX_DOMAIN_LENGTH = 253;

/** Whether `s` is a host name (a trailing dot allowed, any case). */
export function isHostName(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > MAX_DOMAIN_LENGTH) return false;
  return name.split('.').every((l) => LABEL.test(l) || UNDERSCORE_LABEL.test(l));
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
