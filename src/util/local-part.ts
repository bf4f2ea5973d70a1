// The one grammar of local parts in logmta (the part of an address before the "@"):
//   - a dot-string (RFC 5321 §4.1.2; RFC 5322's dot-atom): atoms of atext joined by single dots
//     — what MAIL/RCPT accept unquoted (smtp/protocol/address.ts) and what a bare user name in
//     a header may be (admin/message.ts);
//   - a mailbox name: the local parts logmta delivers to a local mailbox and names a Maildir
//     after — a dot-string of atext without "/" (a path), "!" and "%" (bang paths and %-hacks,
//     RFC 1123 §5.2.16), at most 64 octets, ASCII. The RCPT policy (policy/hooks.ts), local
//     delivery (delivery/engine.ts) and the configuration's `users` lists (config/values.ts)
//     all ask this one rule, so no listed user can be unreachable and no accepted name can
//     climb out of the mail directory;
//   - routing tricks: "%", "!" or "@" in a local part ask a relay to route again.
// Pure functions; nothing here throws.

// atext (RFC 5322 §3.2.3), ASCII, and with SMTPUTF8 (RFC 6531 §3.3) any non-ASCII character too.
const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$/;
const ATEXT_UTF8 = /^(?:[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]|[^\x00-\x7f])+$/u;
// atext without "/", "!" and "%".
const MAILBOX_ATOM = /^[A-Za-z0-9#$&'*+\-=?^_`{|}~]+$/;

/** The longest local part (RFC 5321 §4.5.3.1.1), in octets. */
const MAX_LOCAL_PART_OCTETS = 64;

/** Whether `s` is a dot-string: atext atoms separated by single dots (non-ASCII with `utf8`). */
export function isDotString(s: string, utf8 = false): boolean {
  const re = utf8 ? ATEXT_UTF8 : ATEXT;
  return s.split('.').every((atom) => re.test(atom));
}

/** Whether `local` may name a local mailbox (and so a Maildir): see the header. */
export function isMailboxName(local: string): boolean {
  return local.length <= MAX_LOCAL_PART_OCTETS && local.split('.').every((atom) => MAILBOX_ATOM.test(atom));
}

/** Whether `local` holds a routing trick (%-hack, bang path, a second "@"). */
export function hasRoutingTricks(local: string): boolean {
  return local.includes('%') || local.includes('!') || local.includes('@');
}
