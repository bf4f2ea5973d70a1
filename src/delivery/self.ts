// This MTA's own SMTP listeners, as the MX hosts of a domain may name them, and the rule of
// RFC 5321 §5.1 that keeps mail from looping through us: an MX list that contains this host
// loses this host and every MX of the same or a worse preference; if nothing is left, the mail
// loops back to us (554 5.4.6, as Postfix says it). A backup MX (smtp.relay_domains) whose
// primary is down therefore keeps the mail instead of sending it to itself a hundred times.
// Invariants: an address is ours when one of the `smtp.listen` listeners takes connections to it
// on that port: the exact address, or, for a wildcard listener (0.0.0.0, ::), any address of a
// local interface, all of 127.0.0.0/8 and ::1, and 0.0.0.0 and :: themselves. IPv4-mapped
// IPv6 addresses count as IPv4.
// The pool applies the same rule to a peer that greets with our own name (greetsAs).
// Fails: withoutSelf throws MtaError MX_LOOP (permanent) when this host is the best MX.

import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { MtaError } from '../errors.js';
import type { MxCandidate } from './mx.js';

/** Whether host:port (an address) reaches one of this MTA's SMTP listeners. */
export type IsSelf = (host: string, port: number) => boolean;

const plain = (ip: string): string => {
  const a = ip.toLowerCase();
  return a.startsWith('::ffff:') && net.isIPv4(a.slice(7)) ? a.slice(7) : a;
};

const WILDCARD = new Set(['0.0.0.0', '::']);

/** The addresses of this machine's interfaces (plain form). */
function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .flatMap((i) => (i ? [plain(i.address.replace(/%.*$/, ''))] : []));
}

export class SelfAddresses {
  private readonly exact = new Set<string>();
  private readonly wildcardPorts = new Set<number>();

  constructor(private readonly interfaces: () => string[] = interfaceAddresses) {}

  /** A listener of ours (as configured, or as bound: port 0 is known only then). */
  add(host: string, port: number): void {
    if (port === 0) return;
    const h = plain(host.replace(/^\[|\]$/g, ''));
    if (WILDCARD.has(h)) this.wildcardPorts.add(port);
    else this.exact.add(`${h}:${port}`);
  }

  readonly has: IsSelf = (host, port) => {
    const h = plain(host);
    if (this.exact.has(`${h}:${port}`)) return true;
    if (!this.wildcardPorts.has(port)) return false;
    // 0.0.0.0 and :: (an MX address meant as "no mail here") reach the local host on Linux.
    if (h === '::1' || WILDCARD.has(h) || (net.isIPv4(h) && h.startsWith('127.'))) return true;
    return this.interfaces().includes(h);
  };
}

/**
 * RFC 5321 §5.1: drops this host and every candidate of its preference or worse from a
 * domain's MX candidates (addresses, in preference order). Throws 554 5.4.6 when that leaves
 * none because this host is the best MX (or the domain's own address, as implicit MX).
 */
/** 554 5.4.6: the next hop for `domain` is this MTA itself. */
export function loopsBack(domain: string): MtaError {
  return new MtaError('MX_LOOP', 'permanent', `mail for ${domain} loops back to myself`, {
    smtp: { code: 554, enhanced: '5.4.6' },
  });
}

/**
 * Whether a peer's 220 greeting names the host as we name ourselves (our EHLO name): this MTA
 * reached at an address that is not its own — behind NAT or a load balancer, where the address
 * rule above cannot see it (Postfix checks the greeting too).
 */
export function greetsAs(greetingText: string | undefined, name: string): boolean {
  const first = greetingText?.trim().split(/\s+/)[0];
  return first !== undefined && first.toLowerCase() === name.toLowerCase();
}

export function withoutSelf(domain: string, cands: MxCandidate[], isSelf: IsSelf): MxCandidate[] {
  let worst = Number.POSITIVE_INFINITY;
  for (const c of cands)
    if (c.path === undefined && isSelf(c.host, c.port)) worst = Math.min(worst, c.preference);
  if (worst === Number.POSITIVE_INFINITY) return cands;
  const left = cands.filter((c) => c.preference < worst);
  if (left.length > 0) return left;
  throw loopsBack(domain);
}
