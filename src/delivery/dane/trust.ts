// What `logmta check` and the start-up log say about DANE: whether it is on, and whether the
// resolver's DNSSEC validation is believed ([dns] dnssec, dns/client.ts trustsAd) — without that,
// DANE never applies, whatever delivery.dane says.
// Invariant: the same servers and trust rule the daemon's DnsClient uses. Fails: never.

import type { Config, HostPort } from '../../config/index.js';
import { formatHostPort } from '../../config/index.js';
import { systemServers, trustsAd } from '../../dns/client.js';

const hp = (list: readonly HostPort[]): string => list.map(formatHostPort).join(', ');

/** DANE's line: on or off, and whether the resolver's DNSSEC validation is believed. */
export function describeDane(c: Pick<Config, 'delivery' | 'dns'>): string {
  if (!c.delivery.dane) return 'DANE off (delivery.dane = false)';
  const configured = c.dns.servers.length > 0;
  const servers = configured ? c.dns.servers : systemServers();
  const names = hp(servers);
  const from = configured ? '[dns] servers' : 'the system resolver';
  if (c.dns.dnssec === 'never')
    return 'DANE on, but [dns] dnssec = "never": no answer counts as validated, DANE never applies';
  const trusted = servers.filter((s) => trustsAd(s, c.dns.dnssec));
  if (trusted.length === 0)
    return `DANE on, but ${from} ${names} is not on loopback: its DNSSEC validation is not believed and DANE never applies (run a validating resolver on this host, or set [dns] dnssec = "always" if the path to it is safe)`;
  const how = c.dns.dnssec === 'always' ? '[dns] dnssec = "always"' : 'on loopback';
  const note =
    trusted.length < servers.length ? ` (not from ${hp(servers.filter((s) => !trusted.includes(s)))})` : '';
  return `DANE on; DNSSEC validation believed from ${hp(trusted)} (${how})${note}: it must be a validating resolver`;
}
