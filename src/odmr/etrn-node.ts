// ETRN (RFC 1985) arguments and replies, pure: which held lanes a request names, and the exact
// reply texts. `ETRN node` names the configured ETRN domain covering that node (the domain
// itself, or one of its subdomains when the domain has `subdomains = true`); `ETRN @domain` every
// configured ETRN domain at or below `domain` (and the one covering `domain`); `ETRN #name` the
// held lane called `name` (a configured ETRN domain, optionally written `held-<domain>`).
// Invariant: only configured ETRN domains are ever returned, so an ETRN can never make us
// deliver anywhere but to a configured destination. Fails: null for malformed arguments.

import { heldLaneNameOf } from '../queue/index.js';
import type { SmtpReply } from '../smtp/protocol/reply.js';
import { isAtOrBelow, isSmtpDomain } from '../util/domain.js';

export type EtrnKind = 'node' | 'subtree' | 'queue';

export interface EtrnRequest {
  kind: EtrnKind;
  /** Lower-case name without the @/# prefix and without a trailing dot. */
  name: string;
  /** The argument as the client wrote it (used in replies). */
  raw: string;
}

export interface EtrnDomainLike {
  domain: string;
  subdomains: boolean;
}

const QUEUE = /^[a-z0-9][a-z0-9._-]{0,254}$/;

export function parseEtrnArg(arg: string): EtrnRequest | null {
  const raw = arg.trim();
  if (raw.length === 0 || raw.length > 256 || /\s/.test(raw)) return null;
  const prefix = raw[0];
  const kind: EtrnKind = prefix === '@' ? 'subtree' : prefix === '#' ? 'queue' : 'node';
  let name = (kind === 'node' ? raw : raw.slice(1)).toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (!(kind === 'queue' ? QUEUE.test(name) : isSmtpDomain(name))) return null;
  return { kind, name, raw };
}

/** The configured ETRN domains (lane names) a request covers, in configuration order. */
export function lanesFor(req: EtrnRequest, domains: readonly EtrnDomainLike[]): string[] {
  const out: string[] = [];
  for (const e of domains) {
    const d = e.domain.toLowerCase();
    let hit = false;
    if (req.kind === 'node') hit = req.name === d || (e.subdomains && isAtOrBelow(req.name, d));
    else if (req.kind === 'subtree')
      hit = isAtOrBelow(d, req.name) || (e.subdomains && isAtOrBelow(req.name, d));
    else hit = req.name === d || req.name === heldLaneNameOf(d);
    if (hit && !out.includes(d)) out.push(d);
  }
  return out;
}

// The replies of RFC 1985 section 5, with RFC 2034 enhanced codes (the listener offers
// ENHANCEDSTATUSCODES). 250 and 252 are not used: we always know the exact count, so work is
// announced with 253 and an empty request with 251 (fetchmail stops at the first 251).
export const etrnReplies = {
  started: (raw: string, n: number): SmtpReply => ({
    code: 253,
    enhanced: '2.0.0',
    text: `OK, ${n} pending messages for node ${raw} started`,
  }),
  empty: (raw: string): SmtpReply => ({
    code: 251,
    enhanced: '2.0.0',
    text: `OK, no messages waiting for node ${raw}`,
  }),
  unable: (raw: string): SmtpReply => ({
    code: 458,
    enhanced: '4.3.0',
    text: `Unable to queue messages for node ${raw}`,
  }),
  notAllowed: (raw: string, reason: string): SmtpReply => ({
    code: 459,
    enhanced: '4.7.1',
    text: `Node ${raw} not allowed: ${reason}`,
  }),
  syntax: (): SmtpReply => ({ code: 501, enhanced: '5.5.4', text: 'Syntax Error in Parameters' }),
};
