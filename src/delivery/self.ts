// This MTA's own SMTP listeners, as the MX hosts of a domain may name them, and the rule of
// RFC 5321 §5.1 that keeps mail from looping through us: an MX list that contains this host
// loses this host and every MX of the same or a worse preference; if nothing is left, the mail
// loops back to us (554 5.4.6, as Postfix says it). A backup MX (smtp.relay_domains) whose
// primary is down therefore keeps the mail instead of sending it to itself a hundred times.
// Invariants: an address is ours when one of our SMTP listeners (smtp.listen, submission,
// submissions) takes connections to it on that port: the exact address, or, for a wildcard
// listener (0.0.0.0, ::), any address of a local interface, all of 127.0.0.0/8 and ::1, and
// 0.0.0.0 and :: themselves. IPv4-mapped IPv6 addresses count as IPv4.
// The pool applies the same rule to a peer that greets with our own name (greetsAs). Configured
// next hops (a [[route]], an [[etrn]] host, a cluster peer) are checked by the pool at connect
// time (SelfCheck): one that is this MTA is skipped, and when nothing else takes the mail it is
// deferred (configuredLoop, 451 4.4.6), not bounced — the operator's list is wrong, not the
// recipient, and the mail must wait for the fix.
// Fails: withoutSelf throws MtaError MX_LOOP (permanent) when this host is the best MX;
// configuredLoop is ROUTE_LOOP (transient).

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

/**
 * RFC 5321 §5.1: drops this host and every candidate of its preference or worse from a
 * domain's MX candidates (addresses, in preference order). Throws 554 5.4.6 when that leaves
 * none because this host is the best MX (or the domain's own address, as implicit MX).
 */
export function withoutSelf(domain: string, cands: MxCandidate[], isSelf: IsSelf): MxCandidate[] {
  let worst = Number.POSITIVE_INFINITY;
  for (const c of cands)
    if (c.path === undefined && isSelf(c.host, c.port)) worst = Math.min(worst, c.preference);
  if (worst === Number.POSITIVE_INFINITY) return cands;
  const left = cands.filter((c) => c.preference < worst);
  if (left.length > 0) return left;
  throw loopsBack(domain);
}

/**
 * How the pool tells that a destination's host is this MTA, at connect time:
 * - 'mx': MX hosts (the router dropped our own addresses already, withoutSelf): one that greets
 *   with our name ends the list — it and the worse MX hosts after it are no next hop;
 * - 'configured': a route's or an ETRN domain's hosts: one at an address of our listeners, or
 *   greeting with our name, is skipped, and the others are tried in order;
 * - 'address': a cluster peer: only the address tells (the nodes may share a hostname).
 */
export type SelfCheck = 'mx' | 'configured' | 'address';

/** What a destination key names, for the operator reading a deferral. */
function destinationOf(key: string): string {
  const [kind, name = ''] = key.split(/:(.*)/s);
  if (kind === 'route') return name === '*' ? 'the "*" [[route]]' : `the [[route]] of ${name}`;
  if (kind === 'etrn') return `the [[etrn]] host of ${name}`;
  if (kind === 'cluster') return `cluster node ${name}`;
  return key;
}

/**
 * 451 4.4.6 (routing loop detected): the configured next hop of `key` is this MTA — each of
 * `hops` ("host:port why"). Deferred: a misconfigured route must not lose mail; the queue's
 * retries deliver it once the configuration is fixed (and bounce it at expiry if it never is).
 */
export function configuredLoop(key: string, hops: readonly string[]): MtaError {
  return new MtaError(
    'ROUTE_LOOP',
    'transient',
    `mail loops back to myself: ${hops.join(', ')} (${destinationOf(key)}) is this MTA; deferred until the configuration is fixed`,
    { smtp: { code: 451, enhanced: '4.4.6' } },
  );
}
