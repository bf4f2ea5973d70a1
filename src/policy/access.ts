// The postmaster's access rules ([[access]]): Postfix's check_client_access, check_sender_access
// and check_recipient_access in one ordered list, as a session filter of the SMTP listeners.
// Every rule is decided at RCPT, as Postfix does with smtpd_delay_reject = yes: client, sender and
// recipient are all known there, mail to postmaster can still be let through, and the log line
// names the whole envelope of what was refused. The first rule that matches decides:
//   reject → 554 5.7.1, defer → 450 4.7.1 (with the rule's text, else "Access denied"),
//   permit → the recipient passes the rules, and the [[dnsbl]] lists checked at RCPT (permitted()).
// Invariants: it runs after our own recipient checks (relay control, unknown users; filters.ts), so
// a permit never opens the relay; a client rule never matches an authenticated session (a roaming
// user may send from a blocked network after AUTH); a recipient whose local part is postmaster
// (RFC 5321 4.5.1) is matched only by a recipient rule naming that address or "postmaster@".
// Local submissions (`logmta sendmail`) are no SMTP session and do not pass here (daemon.ts).
// Pure but for the log line; never throws.

import { cidrListContains } from '../config/index.js';
import type { AccessRule, AddressPattern } from '../config/schema.js';
import type { Logger } from '../log.js';
import { shownIp } from '../smtp/server/client-rates.js';
import type { SessionContext, SmtpReply } from '../smtp/server/hooks.js';
import { domainOf, isAtOrBelow, localPartOf } from '../util/domain.js';
import type { SessionFilter } from './filters.js';

/** Whether `address` ('' = the null sender) is one of `patterns` (without case). */
export function matchesAddress(
  patterns: readonly AddressPattern[],
  address: string,
  domains = true,
): boolean {
  const lower = address.toLowerCase();
  const domain = domainOf(address);
  const local = localPartOf(lower);
  for (const p of patterns) {
    switch (p.kind) {
      case 'null':
        if (address === '') return true;
        break;
      case 'address':
        if (address !== '' && `${local}@${domain}` === p.address) return true;
        break;
      case 'local':
        if (address !== '' && local === p.local) return true;
        break;
      case 'domain':
        if (domains && domain !== '' && (p.subdomains ? isAtOrBelow(domain, p.domain) : domain === p.domain))
          return true;
        break;
    }
  }
  return false;
}

export interface AccessFacts {
  ip: string;
  /** The AUTH identity, when the session has one. */
  auth: string | undefined;
  /** The transaction's sender ('' = the null sender). */
  sender: string;
  recipient: string;
}

/** The index of the first rule that matches, or -1. */
export function firstMatch(rules: readonly AccessRule[], f: AccessFacts): number {
  const postmaster = localPartOf(f.recipient).toLowerCase() === 'postmaster';
  return rules.findIndex((r) => {
    if (r.on === 'client') return !postmaster && f.auth === undefined && cidrListContains(r.clients, f.ip);
    if (r.on === 'sender') return !postmaster && matchesAddress(r.patterns, f.sender);
    // Postmaster is named, never caught by a domain.
    return matchesAddress(r.patterns, f.recipient, !postmaster);
  });
}

/** The reply of a reject or defer rule, in Postfix's words. */
export function accessReply(rule: AccessRule, f: AccessFacts): SmtpReply {
  const why = rule.text ?? 'Access denied';
  const text =
    rule.on === 'client'
      ? `Client host [${shownIp(f.ip)}] rejected: ${why}`
      : rule.on === 'sender'
        ? `<${f.sender}>: Sender address rejected: ${why}`
        : `<${f.recipient}>: Recipient address rejected: ${why}`;
  return rule.action === 'defer'
    ? { code: 450, enhanced: '4.7.1', text }
    : { code: 554, enhanced: '5.7.1', text };
}

export interface AccessControl {
  /** The RCPT stage of the rules (put first among the session filters). */
  filter: SessionFilter;
  /** Whether the last recipient checked in this session was let through by a permit rule. */
  permitted(ctx: SessionContext): boolean;
}

export function accessControl(rules: readonly AccessRule[], logger?: Logger): AccessControl {
  const permits = new WeakMap<SessionContext, boolean>();
  return {
    filter: {
      checkRecipient(recipient, ctx) {
        const f: AccessFacts = {
          ip: ctx.client.ip,
          auth: ctx.client.auth,
          sender: ctx.sender ?? '',
          recipient,
        };
        const i = firstMatch(rules, f);
        const rule = rules[i];
        permits.set(ctx, rule?.action === 'permit');
        if (rule === undefined || rule.action === 'permit') return null;
        logger?.info(
          { ip: f.ip, sender: f.sender, rcpt: recipient, rule: `access[${i + 1}]`, action: rule.action },
          'access rule refused a recipient',
        );
        return accessReply(rule, f);
      },
    },
    permitted: (ctx) => permits.get(ctx) === true,
  };
}
