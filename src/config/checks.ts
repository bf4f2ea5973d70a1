// Cross-checks between sections, run after every section was read: each domain has one way
// of being delivered (local, ETRN-held, ODMR-held), a relay domain is none of those, names are
// unique where lookups need them, no two listeners claim the same address, relay_networks
// opens no relay to the Internet, no ETRN domain takes the subdomains of a public suffix (a
// relay for all of "co.uk"), and no route or ETRN host is one of our own listeners (a loop).
// Invariant: works on the resolved Config; entries whose own key was invalid (empty domain or
// name) are skipped, so one mistake is reported once.
// Failure: records problems; never throws.

import { X509Certificate } from 'node:crypto';
import { parse as parseName } from 'tldts';
import { SelfAddresses } from '../delivery/self.js';
import { formatHostPort, type HostPort, ipv4PrefixOf, isLoopbackHost } from './net.js';
import type { Problems } from './reader.js';
import type { Config } from './schema.js';

interface Claim {
  domain: string;
  path: string;
  kind: string;
  /** ETRN with subdomains = true also claims every name below `domain`. */
  subdomains: boolean;
}

function covers(a: Claim, domain: string): boolean {
  return a.domain === domain || (a.subdomains && domain.endsWith(`.${a.domain}`));
}

function unique(problems: Problems, entries: { value: string; path: string }[], what: string): void {
  const first = new Map<string, string>();
  for (const { value, path } of entries) {
    if (value === '') continue;
    const prev = first.get(value);
    if (prev !== undefined) problems.add(path, `${what} ${JSON.stringify(value)} is already used by ${prev}`);
    else first.set(value, path);
  }
}

function checkDomains(c: Config, problems: Problems): void {
  const claims: Claim[] = [
    ...c.local.map((l, i) => ({
      domain: l.domain,
      path: `local[${i + 1}]`,
      kind: 'local',
      subdomains: false,
    })),
    ...c.etrn.map((e, i) => ({
      domain: e.domain,
      path: `etrn[${i + 1}]`,
      kind: 'ETRN',
      subdomains: e.subdomains,
    })),
    ...c.odmr.accounts.flatMap((a, i) =>
      a.domains.map((domain, j) => ({
        domain,
        path: `odmr.account[${i + 1}].domains[${j + 1}]`,
        kind: 'ODMR',
        subdomains: false,
      })),
    ),
  ].filter((cl) => cl.domain !== '');
  // Same-kind duplicates are reported by unique() below with a clearer message.
  for (let i = 0; i < claims.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = claims[j]!;
      const b = claims[i]!;
      if (a.kind === b.kind) continue;
      if (covers(a, b.domain) || covers(b, a.domain)) {
        const how = a.domain === b.domain ? 'is also' : 'overlaps';
        problems.add(
          `${b.path}`,
          `${b.kind} domain ${JSON.stringify(b.domain)} ${how} ${a.kind} domain ${JSON.stringify(a.domain)} (${a.path})`,
        );
      }
    }
  }
  unique(
    problems,
    c.local.map((l, i) => ({ value: l.domain, path: `local[${i + 1}].domain` })),
    'local domain',
  );
  unique(
    problems,
    c.etrn.map((e, i) => ({ value: e.domain, path: `etrn[${i + 1}].domain` })),
    'ETRN domain',
  );
  unique(
    problems,
    c.odmr.accounts.flatMap((a, i) =>
      a.domains.map((d, j) => ({ value: d, path: `odmr.account[${i + 1}].domains[${j + 1}]` })),
    ),
    'ODMR domain',
  );
  const local = new Set(c.local.map((l) => l.domain));
  c.routes.forEach((r, i) => {
    if (local.has(r.domain)) {
      problems.add(
        `route[${i + 1}].domain`,
        `${JSON.stringify(r.domain)} is a local domain; its mail never uses a route`,
      );
    }
  });
  unique(
    problems,
    c.routes.map((r, i) => ({ value: r.domain, path: `route[${i + 1}].domain` })),
    'route domain',
  );
  // relay_domains widens what strangers may send to; a domain that is already taken from
  // anyone (local, ETRN, ODMR) listed there means the operator misread one of the two.
  c.smtp.relayDomains.forEach((domain, i) => {
    const claim = claims.find((cl) => covers(cl, domain));
    if (claim)
      problems.add(
        `smtp.relay_domains[${i + 1}]`,
        `${JSON.stringify(domain)} is ${claim.kind === 'local' ? 'a' : 'an'} ${claim.kind} domain (${claim.path}); its mail is accepted without relay_domains`,
      );
  });
  unique(
    problems,
    c.smtp.relayDomains.map((d, i) => ({ value: d, path: `smtp.relay_domains[${i + 1}]` })),
    'relay domain',
  );
  // What we collect from a provider we must take: a domain that is neither local nor routed
  // would be held back at the provider at every poll.
  const routed = new Set(c.routes.map((r) => r.domain));
  c.odmr.providers.forEach((p, i) => {
    (p.domains ?? []).forEach((domain, j) => {
      if (domain === '' || local.has(domain) || routed.has(domain)) return;
      problems.add(
        `odmr.provider[${i + 1}].domains[${j + 1}]`,
        `${JSON.stringify(domain)} is neither a [[local]] domain nor routed ([[route]] with this domain): mail collected for it could not be taken`,
      );
    });
  });
}

const WILDCARDS = new Set(['0.0.0.0', '::']);

function checkListeners(c: Config, problems: Problems): void {
  const all: { hp: HostPort; path: string }[] = [
    ...c.smtp.listen.map((hp, i) => ({ hp, path: `smtp.listen[${i + 1}]` })),
    ...c.smtp.submission.map((hp, i) => ({ hp, path: `smtp.submission[${i + 1}]` })),
    ...c.smtp.submissions.map((hp, i) => ({ hp, path: `smtp.submissions[${i + 1}]` })),
    ...c.odmr.listen.map((hp, i) => ({ hp, path: `odmr.listen[${i + 1}]` })),
    ...(c.admin.listen ? [{ hp: c.admin.listen, path: 'admin.listen' }] : []),
  ].filter((l) => l.hp.port !== 0);
  for (let i = 0; i < all.length; i++) {
    for (let j = 0; j < i; j++) {
      const a = all[j]!;
      const b = all[i]!;
      const clash =
        a.hp.port === b.hp.port &&
        (a.hp.host === b.hp.host || WILDCARDS.has(a.hp.host) || WILDCARDS.has(b.hp.host));
      if (clash)
        problems.add(b.path, `${formatHostPort(b.hp)} clashes with ${a.path} (${formatHostPort(a.hp)})`);
    }
  }
}

/** Peers must be able to reach this node: an advertised address, or a first listener that is one. */
function checkCluster(c: Config, problems: Problems): void {
  const k = c.cluster;
  if (!k) return;
  const smtp = c.smtp.listen[0];
  if (k.advertise === undefined && (smtp === undefined || WILDCARDS.has(smtp.host)))
    problems.add(
      'cluster.advertise',
      smtp === undefined
        ? 'required when smtp.listen is empty (where peers reach this node)'
        : `required when smtp.listen[1] is a wildcard address (${formatHostPort(smtp)})`,
    );
  // The cluster's hooks (mail for domains homed on other nodes, shared AUTH throttles and
  // rates) live on the main thread; sessions in a thread of their own cannot reach them yet.
  if (c.smtp.sessionThread)
    problems.add('smtp.session_thread', 'cannot be used with [cluster] (the cluster runs the SMTP sessions on the main thread)');
  const odmr = c.odmr.listen[0];
  if (k.odmrAdvertise === undefined && odmr !== undefined && WILDCARDS.has(odmr.host))
    problems.add(
      'cluster.odmr_advertise',
      `required when odmr.listen[1] is a wildcard address (${formatHostPort(odmr)})`,
    );
}

/** Shortest prefixes allowed in relay_networks: anything wider lets much of the Internet relay. */
const RELAY_MIN_PREFIX = { 4: 8, 6: 16 } as const;

/**
 * relay_networks lets its clients send mail anywhere without AUTH: a block like 0.0.0.0/0 (or
 * any wider than a /8, or an IPv6 /16) would make logmta an open relay, so it is refused. An
 * IPv6 block is also measured by the IPv4 addresses it matches (IPv4 clients match IPv4-mapped
 * blocks, config/net.ts): "::ffff:0:0/96" and "::/16" look narrow but hold every IPv4 address.
 */
function checkRelayNetworks(c: Config, problems: Problems): void {
  c.smtp.relayNetworks.forEach((n, i) => {
    const v4 = n.family === 6 ? ipv4PrefixOf(n) : undefined;
    const mapped = v4 !== undefined && v4 < RELAY_MIN_PREFIX[4];
    if (n.prefix >= RELAY_MIN_PREFIX[n.family] && !mapped) return;
    const reach =
      n.prefix === 0
        ? 'every address'
        : mapped
          ? `${v4 === 0 ? 'every IPv4 address' : `a /${v4} of IPv4`} (IPv4 clients match the IPv4-mapped range ::ffff:0:0/96)`
          : 'a large part of the Internet';
    problems.add(
      `smtp.relay_networks[${i + 1}]`,
      `${n.text} would let ${reach} relay through this host (an open relay); list the networks of your own clients (at most a /${mapped ? `${RELAY_MIN_PREFIX[4]} of IPv4` : RELAY_MIN_PREFIX[n.family]} each), and let others authenticate`,
    );
  });
}

/**
 * Whether `domain` is itself a public suffix under the ICANN rules of the Public Suffix List
 * ("com", "co.uk", "k12.ak.us"): names below it belong to unrelated registrants. Suffixes of
 * the list's private section ("github.io") are not counted: their owner may run this MTA.
 */
export function isPublicSuffix(domain: string): boolean {
  const p = parseName(domain, { allowPrivateDomains: false });
  return p.isIcann === true && p.publicSuffix === domain;
}

/**
 * `subdomains = true` makes every name below an ETRN domain ours to take from anyone and relay
 * to the customer: on a public suffix that is everyone's mail under it (anything@x.co.uk).
 */
function checkPublicSuffixes(c: Config, problems: Problems): void {
  c.etrn.forEach((e, i) => {
    if (e.subdomains && e.domain !== '' && isPublicSuffix(e.domain))
      problems.add(
        `etrn[${i + 1}].subdomains`,
        `${JSON.stringify(e.domain)} is a public suffix: with subdomains = true mail for every domain under it (anyone's, e.g. another.${e.domain}) would be taken from anyone and relayed to this customer; list the customer's own domain (e.g. "customer.${e.domain}")`,
      );
  });
}

/**
 * A route's or ETRN domain's host at one of our own listeners (by the configuration: the exact
 * address, or for a wildcard listener a loopback or local address; "localhost" too) would hand
 * the mail back to us: a loop. Names that DNS turns into our address, and NAT, are found when
 * delivering (delivery/self.ts), which defers such mail.
 */
function checkSelfHosts(c: Config, problems: Problems): void {
  const self = new SelfAddresses();
  for (const hp of [...c.smtp.listen, ...c.smtp.submission, ...c.smtp.submissions])
    self.add(hp.host, hp.port);
  const ours = (h: HostPort) =>
    h.host.toLowerCase() === 'localhost'
      ? self.has('127.0.0.1', h.port) || self.has('::1', h.port)
      : self.has(h.host, h.port);
  const report = (path: string, h: HostPort) =>
    problems.add(
      path,
      `${formatHostPort(h)} is one of this MTA's own listeners: mail sent there comes back here (a loop); name the next hop`,
    );
  c.routes.forEach((r, i) => {
    r.hosts.forEach((h, j) => {
      if (ours(h))
        report(r.hosts.length === 1 ? `route[${i + 1}].host` : `route[${i + 1}].host[${j + 1}]`, h);
    });
  });
  c.etrn.forEach((e, i) => {
    if (e.host && ours(e.host)) report(`etrn[${i + 1}].host`, e.host);
  });
}

export function checkConfig(c: Config, problems: Problems): void {
  checkDomains(c, problems);
  checkPublicSuffixes(c, problems);
  checkSelfHosts(c, problems);
  checkRelayNetworks(c, problems);
  checkListeners(c, problems);
  checkCluster(c, problems);
  unique(
    problems,
    c.users.map((u, i) => ({ value: u.name, path: `user[${i + 1}].name` })),
    'user name',
  );
  unique(
    problems,
    c.odmr.accounts.map((a, i) => ({ value: a.user, path: `odmr.account[${i + 1}].user` })),
    'ODMR account',
  );
}

/**
 * Things a valid configuration may still get wrong for a public MTA, as notices (the daemon
 * logs them as warnings at start, `logmta check` prints them): a host name that is not fully
 * qualified (other MTAs may refuse it as HELO name, and bounces come from MAILER-DAEMON@it),
 * a listener on a non-loopback address without [tls] (mail would arrive in clear), and a TLS
 * certificate that does not name the host name or is outside its validity at `now` (clients
 * that verify — MTA-STS, DANE, Postfix's `verify` level — refuse STARTTLS to it), and a
 * recipient limit below the 100 RFC 5321 §4.5.3.1.8 requires (allowed, as Postfix allows a lower
 * `smtpd_recipient_limit`: some operators want one for submission; it costs clients a split).
 */
/** RFC 5321 §4.5.3.1.8: the recipients per transaction a server must accept. */
const RFC_MIN_RECIPIENTS = 100;

export function configNotices(c: Config, now = Date.now()): string[] {
  const out: string[] = [];
  if (!c.hostname.includes('.'))
    out.push(
      `hostname "${c.hostname}" is not a fully qualified domain name: other MTAs may refuse it as HELO name, and bounces come from MAILER-DAEMON@${c.hostname}; set hostname`,
    );
  const open = [...c.smtp.listen, ...c.smtp.submission].filter((a) => !isLoopbackHost(a.host));
  if (c.tls === undefined && open.length > 0)
    out.push(
      `no [tls]: ${open.map(formatHostPort).join(', ')} offer no STARTTLS, so mail and passwords from other hosts travel in clear`,
    );
  if (c.tls !== undefined) out.push(...certificateNotices(c.tls.cert, c.tls.certFile, c.hostname, now));
  if (c.smtp.maxRecipients < RFC_MIN_RECIPIENTS)
    out.push(
      `smtp.max_recipients = ${c.smtp.maxRecipients} is below the ${RFC_MIN_RECIPIENTS} recipients per transaction RFC 5321 §4.5.3.1.8 requires a server to accept: in every SMTP session logmta serves (MTA and submission listeners, mail collected by ATRN) the RCPTs beyond the first ${c.smtp.maxRecipients} get 452 4.5.3; a conforming client sends those in another transaction, others may defer or bounce them`,
    );
  return out;
}

/** The certificate's problems for a client that verifies it against `hostname`. */
function certificateNotices(pem: string, file: string, hostname: string, now: number): string[] {
  let x: X509Certificate;
  try {
    x = new X509Certificate(pem);
  } catch {
    return []; // reading it is the [tls] section's check
  }
  const out: string[] = [];
  if (x.checkHost(hostname) === undefined) {
    const names = x.subjectAltName ?? x.subject.replace(/\n/g, ', ');
    out.push(
      `the TLS certificate ${file} does not name hostname "${hostname}" (it names ${names}): clients that verify refuse STARTTLS; use a certificate for ${hostname} or set hostname to the name it holds`,
    );
  }
  if (Date.parse(x.validTo) < now) out.push(`the TLS certificate ${file} expired on ${x.validTo}: renew it`);
  else if (Date.parse(x.validFrom) > now)
    out.push(`the TLS certificate ${file} is not valid before ${x.validFrom}`);
  return out;
}
