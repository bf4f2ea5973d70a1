// Readers of the postmaster's access controls: [[access]] rules (client, sender or recipient →
// reject, defer or permit), the per-client rates of [smtp] ("60/1m") and the MAIL FROM
// addresses a [[user]] may use (`addresses`). What they mean at the SMTP level is
// src/policy/access.ts, src/smtp/server/client-rates.ts and src/policy/hooks.ts.
// Same contract as sections.ts: problems are recorded on the reader (never thrown), and the
// value returned is incomplete only when a problem was recorded.

import { parseCidr } from './net.js';
import type { Section } from './reader.js';
import type { AccessAction, AccessRule, AddressPattern, WindowRate } from './schema.js';
import { MAX_DURATION_MS, parseDuration, RATE_PERIODS, valueError } from './units.js';
import { parseDomain } from './values.js';

/**
 * "60/1m", "5/2s", "100/h": at most `count` events per period (a duration, or a bare unit).
 * Postfix's rate limits count per `anvil_rate_time_unit` (60 s); here each rate names its own.
 */
export function parseWindowRate(input: string): WindowRate {
  const expected = 'a rate like "60/1m", "5/2s" or "1000/h" (events per period)';
  const m = /^\s*(\d+)\s*\/\s*(\S+)\s*$/.exec(input);
  if (!m) throw valueError(expected, input);
  const count = Number(m[1]);
  const unit = m[2]!.toLowerCase();
  let periodMs = RATE_PERIODS[unit];
  if (periodMs === undefined) {
    try {
      periodMs = parseDuration(unit);
    } catch {
      throw valueError(expected, input);
    }
  }
  if (!Number.isSafeInteger(count) || count < 1 || !(periodMs > 0) || periodMs > MAX_DURATION_MS)
    throw valueError(expected, input);
  return { count, periodMs };
}

/** A rate key of [smtp]; 0 (Postfix's "no limit") is taken as absent. */
export function readRate(s: Section, k: string): WindowRate | undefined {
  if (s.raw(k) === 0) return undefined;
  return s.map(k, parseWindowRate);
}

const LOCAL_PART = /^[\x21-\x3f\x41-\x7e]{1,64}$/;

/**
 * An entry of a sender or recipient list: "<>" (the null sender, when `nullSender`), "user@domain",
 * "user@" (that local part at any domain), "@domain" (that domain alone) or "domain" (the domain
 * and its subdomains, as Postfix's access maps match by default).
 */
export function parseAddressPattern(input: string, nullSender: boolean): AddressPattern {
  const v = input.trim();
  const expected = `${nullSender ? '"<>", ' : ''}an address "user@example.com", "user@", "@example.com" or a domain "example.com"`;
  if (v === '<>') {
    if (nullSender) return { kind: 'null' };
    throw valueError(expected, input);
  }
  const at = v.lastIndexOf('@');
  if (at < 0) return { kind: 'domain', domain: parseDomain(v), subdomains: true };
  const local = v.slice(0, at);
  const domain = v.slice(at + 1);
  if (local === '' && domain === '') throw valueError(expected, input);
  if (local === '') return { kind: 'domain', domain: parseDomain(domain), subdomains: false };
  if (!LOCAL_PART.test(local)) throw valueError(expected, input);
  if (domain === '') return { kind: 'local', local: local.toLowerCase() };
  return { kind: 'address', address: `${local.toLowerCase()}@${parseDomain(domain)}` };
}

/** A [[user]]'s `addresses`: "ann@example.com" or "@example.org" (that domain, no subdomains). */
export function parseLoginAddress(input: string): AddressPattern {
  const v = input.trim();
  const p = v.includes('@') ? parseAddressPattern(v, false) : undefined;
  if (p === undefined || p.kind === 'local')
    throw valueError('an address "ann@example.com" or a whole domain "@example.org"', input);
  return p;
}

const KINDS = ['client', 'sender', 'recipient'] as const;
/** Printable ASCII: a reply line's text (RFC 5321 4.2), at most 200 characters. */
const REPLY_TEXT = /^[\x20-\x7e]{1,200}$/;

export function readAccess(list: Section[] | undefined): AccessRule[] {
  return (list ?? []).map((s) => {
    const named = KINDS.filter((k) => s.has(k));
    if (named.length === 0)
      s.problems.add(s.path, 'names nothing to match: give one of client, sender or recipient');
    else if (named.length > 1)
      s.problem(
        named[1]!,
        `one [[access]] table matches one thing; this one names ${named.join(' and ')} (write one table per kind)`,
      );
    const action = s.has('action')
      ? (s.string('action', { oneOf: ['reject', 'defer', 'permit'] }) as AccessAction | undefined)
      : s.required('action', () => undefined, 'required: "reject", "defer" or "permit"');
    const text = s.string('text');
    if (text !== undefined && !REPLY_TEXT.test(text))
      s.problem('text', 'expected printable ASCII of at most 200 characters (it becomes the SMTP reply)');
    if (text !== undefined && action === 'permit')
      s.problem('text', 'a permit sends no reply: leave text out');
    const on = named[0] ?? 'client';
    const base = { action: action ?? 'reject', text } as const;
    let rule: AccessRule;
    if (on === 'client')
      rule = { on, clients: s.listOf('client', parseCidr, { nonEmpty: true }) ?? [], ...base };
    else
      rule = {
        on,
        patterns: s.listOf(on, (e) => parseAddressPattern(e, on === 'sender'), { nonEmpty: true }) ?? [],
        ...base,
      };
    for (const k of named.slice(1)) s.raw(k);
    s.finish();
    return rule;
  });
}
