// Authentication-Results (RFC 8601): the field we prepend, and the removal of fields that claim
// to be ours (§5: a receiver must not trust, and should remove, results that carry its own
// authserv-id but that it did not add). Pure; never throws.
// Invariant: the field we write is one header field ending in CRLF whose text cannot break out of
// it (CR, LF and other controls in results are replaced by spaces).

import { headerFields } from './message.js';

/** "Authentication-Results: <id>;\r\n\t<result>;\r\n\t<result>\r\n" (or "<id>; none"). */
export function authResultsField(authservId: string, results: readonly string[]): string {
  const clean = results.map((r) => r.replace(/[\x00-\x1f\x7f]+/g, ' ').trim()).filter((r) => r !== '');
  if (clean.length === 0) return `Authentication-Results: ${authservId}; none\r\n`;
  return `Authentication-Results: ${authservId};\r\n\t${clean.join(';\r\n\t')}\r\n`;
}

/** The authserv-id of an Authentication-Results field value (its first token, comments skipped). */
export function authservIdOf(value: string): string {
  const v = value
    .replace(/\r\n/g, '')
    .replace(/\([^)]*\)/g, ' ')
    .trim();
  const end = v.search(/[\s;]/);
  return (end < 0 ? v : v.slice(0, end)).toLowerCase();
}

/**
 * The header section without the Authentication-Results fields that claim `authservId`, and how
 * many were removed (the same Buffer when none).
 */
export function removeOurResults(header: Buffer, authservId: string): { header: Buffer; removed: number } {
  const id = authservId.toLowerCase();
  const fields = headerFields(header);
  const keep = fields.filter(
    (f) =>
      !(
        f.name.toLowerCase() === 'authentication-results' &&
        authservIdOf(f.raw.slice(f.raw.indexOf(':') + 1)) === id
      ),
  );
  if (keep.length === fields.length) return { header, removed: 0 };
  const text = keep.map((f) => `${f.raw}\r\n`).join('');
  return { header: Buffer.from(text, 'latin1'), removed: fields.length - keep.length };
}
