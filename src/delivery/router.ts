// Where a recipient's mail goes, from the configuration alone: a local Maildir, a local mailbox
// server over LMTP, a domain held for ODMR (only its customer can collect it), or a remote
// destination (static route, ETRN domain host, or MX lookup). Pure decisions; no I/O except the
// lookups it hands back as a function (MX, and the addresses of route and ETRN host names, all
// through the one resolver). Domains compare lower-case without a trailing dot. Where mail goes says nothing
// about whose mail we take: acceptance is policy's (src/policy/hooks.ts, smtp.relay_domains).
// In a cluster, Redirects (src/cluster/directory.ts) send ETRN/ODMR domains homed on other nodes,
// and everything while this node drains, to a peer's SMTP instead.
import type { Config, Credentials, EtrnDomain, LocalDomain, Route } from '../config/index.js';
import { MtaError } from '../errors.js';
import { daneCandidates } from './dane/lookup.js';
import { type DnsResolver, type MxCandidate, resolveAddresses, resolveMx } from './mx.js';
import { type IsSelf, type SelfCheck, withoutSelf } from './self.js';

export type Decision =
  | { kind: 'local'; local: LocalDomain }
  | { kind: 'odmr'; domain: string }
  | {
      kind: 'remote';
      /** Destination key for connection reuse and concurrency limits. */
      key: string;
      candidates: () => Promise<MxCandidate[]>;
      requireTls: boolean;
      verifyTls: boolean;
      auth: Credentials | undefined;
      /** ETRN domain whose held lane takes deferred recipients. */
      etrn: string | undefined;
      /** Deliver with LMTP (RFC 2033) to a local mailbox server. */
      lmtp?: true;
      /**
       * How the pool tells a host that is this MTA (a loop, self.ts): MX hosts and configured
       * ones (route, ETRN host) by address and greeting, a cluster peer by address; LMTP never.
       */
      selfCheck?: SelfCheck;
      /** MX addresses one attempt tries at most (delivery.mx_address_limit); undefined = all. */
      addressLimit?: number;
      /** The domain whose MTA-STS policy applies (MX delivery with delivery.mta_sts on). */
      mtaSts?: string;
      /** DANE applies to the candidates' MX hosts (delivery.dane on, a resolver that can validate). */
      dane?: true;
    };

/** A cluster peer that takes mail instead of its usual destination (src/cluster/ decides which). */
export interface PeerTarget {
  node: string;
  host: string;
  port: number;
  /** The cluster secret, as AUTH credentials. */
  auth: Credentials;
}

/**
 * Where mail goes instead of its usual destination in a cluster. Answers from memory (no I/O):
 * the router asks for every recipient's domain.
 */
export interface Redirects {
  /** The peer an ETRN/ODMR domain's mail goes to because its home is another node; undefined = held here. */
  homeElsewhere(domain: string): PeerTarget | undefined;
  /** While this node drains: the peer any other non-local mail goes to; undefined = deliver as usual. */
  drainTarget(domain: string): PeerTarget | undefined;
}

/**
 * Configured hosts (route, ETRN host) to addresses through the resolver, like MX hosts. A host
 * that does not resolve is the configuration's fault, not the recipient's: it defers (451 4.4.3)
 * instead of bouncing, so the mail waits for the operator's fix (Postfix does the same).
 */
async function configuredHosts(hosts: MxCandidate[], resolver: DnsResolver): Promise<MxCandidate[]> {
  try {
    return await resolveAddresses(hosts, resolver);
  } catch (e) {
    if (e instanceof MtaError && e.kind === 'permanent')
      throw new MtaError('DNS_ROUTE_HOST', 'transient', e.message, {
        smtp: { code: 451, enhanced: '4.4.3' },
        cause: e,
      });
    throw e;
  }
}

function under(domain: string, parent: string): boolean {
  return domain === parent || domain.endsWith(`.${parent}`);
}

export class Router {
  private readonly local = new Map<string, LocalDomain>();
  private readonly routes = new Map<string, Route>();
  private readonly odmr = new Set<string>();
  private redirects: Redirects | undefined;

  constructor(
    private readonly config: Pick<Config, 'local' | 'routes' | 'etrn' | 'odmr' | 'delivery'>,
    private readonly resolver: DnsResolver,
    private readonly random: () => number = Math.random,
    /** Port for MX hosts (25; tests point it at a sink). */
    private readonly mxPort = 25,
    /** Whether an MX address is one of our own listeners (self.ts): never a next hop. */
    private readonly isSelf: IsSelf = () => false,
  ) {
    for (const l of config.local) this.local.set(l.domain, l);
    for (const r of config.routes) if (!this.routes.has(r.domain)) this.routes.set(r.domain, r);
    for (const a of config.odmr.accounts) for (const d of a.domains) this.odmr.add(d);
  }

  /** In a cluster: where mail for domains homed on other nodes (and, while draining, all mail) goes. */
  setRedirects(r: Redirects): void {
    this.redirects = r;
  }

  /**
   * The ODMR domain whose held lane on this node takes `domain`'s mail at acceptance: undefined
   * when it is no ODMR domain, or (in a cluster) when its home is another node — then the mail
   * is relayed there at once, like any other, and held here only if that is deferred.
   */
  heldHere(domain: string): string | undefined {
    if (!this.odmr.has(domain)) return undefined;
    return this.redirects?.homeElsewhere(domain) ? undefined : domain;
  }

  isLocal(domain: string): boolean {
    return this.local.has(domain);
  }

  localDomain(domain: string): LocalDomain | undefined {
    return this.local.get(domain);
  }

  /** The ODMR domain that holds mail for `domain`, if any. */
  odmrDomainOf(domain: string): string | undefined {
    return this.odmr.has(domain) ? domain : undefined;
  }

  /** The configured ETRN domain covering `domain`, if any. */
  etrnOf(domain: string): EtrnDomain | undefined {
    for (const e of this.config.etrn) {
      if (domain === e.domain || (e.subdomains && under(domain, e.domain))) return e;
    }
    return undefined;
  }

  decide(domain: string): Decision {
    const local = this.local.get(domain);
    if (local?.lmtp) {
      const a = local.lmtp;
      const c: MxCandidate =
        a.kind === 'unix'
          ? { host: `unix:${a.path}`, port: 0, preference: -1, path: a.path }
          : { host: a.host, port: a.port, preference: -1 };
      return {
        kind: 'remote',
        key: `lmtp:${domain}`,
        candidates: async () => [c],
        requireTls: false,
        verifyTls: false,
        auth: undefined,
        etrn: undefined,
        lmtp: true,
      };
    }
    if (local) return { kind: 'local', local };
    const etrn = this.etrnOf(domain);
    const odmr = this.odmr.has(domain);
    if (this.redirects) {
      // A cluster: mail of a domain homed on another node goes there (deferred: held here for it).
      const held = odmr ? domain : etrn?.domain;
      const home = held === undefined ? undefined : this.redirects.homeElsewhere(held);
      if (home) return this.toPeer(home, held);
      if (!odmr) {
        const peer = this.redirects.drainTarget(domain);
        if (peer) return this.toPeer(peer, etrn?.domain);
      }
    }
    if (odmr) return { kind: 'odmr', domain };
    const route = this.routes.get(domain) ?? (etrn ? undefined : this.routes.get('*'));
    if (etrn?.host) {
      const h = etrn.host;
      return {
        kind: 'remote',
        key: `etrn:${etrn.domain}`,
        candidates: () => configuredHosts([{ host: h.host, port: h.port, preference: -1 }], this.resolver),
        requireTls: false,
        verifyTls: false,
        auth: undefined,
        etrn: etrn.domain,
        selfCheck: 'configured',
      };
    }
    if (route) {
      const hosts = route.hosts.map((h) => ({ host: h.host, port: h.port, preference: -1 }));
      return {
        kind: 'remote',
        key: `route:${route.domain}`,
        candidates: () => configuredHosts(hosts, this.resolver),
        requireTls: route.requireTls,
        verifyTls: route.verifyTls,
        auth: route.auth,
        etrn: etrn?.domain,
        selfCheck: 'configured',
      };
    }
    return this.byMx(domain, etrn);
  }

  private toPeer(t: PeerTarget, held: string | undefined): Decision {
    const hosts = [{ host: t.host, port: t.port, preference: -1 }];
    return {
      kind: 'remote',
      key: `cluster:${t.node}`,
      candidates: () => configuredHosts(hosts, this.resolver),
      requireTls: false,
      verifyTls: false,
      auth: t.auth,
      etrn: held,
      // Nodes may share a hostname: only a peer address of our own is a loop.
      selfCheck: 'address',
    };
  }

  private byMx(domain: string, etrn: EtrnDomain | undefined): Decision {
    // DANE (RFC 7672) is about the MX hosts of a domain, as MTA-STS: a route's are the operator's.
    const dane =
      this.config.delivery.dane && this.resolver.resolveSecure !== undefined && this.resolver.validating !== false;
    return {
      kind: 'remote',
      key: `mx:${domain}`,
      // RFC 5321 §5.1: this host and the MX hosts it prefers to itself are no next hop.
      candidates: async () => {
        const mx = await resolveMx(domain, {
          resolver: this.resolver,
          random: this.random,
          port: this.mxPort,
          dnssec: dane,
        });
        const cands = withoutSelf(domain, await resolveAddresses(mx, this.resolver), this.isSelf);
        return dane ? daneCandidates(cands, { resolver: this.resolver, now: Date.now }) : cands;
      },
      requireTls: false,
      verifyTls: false,
      auth: undefined,
      etrn: etrn?.domain,
      selfCheck: 'mx',
      // Only MX lists are cut: the hosts of a route are the operator's own list.
      addressLimit: this.config.delivery.mxAddressLimit,
      // RFC 8461 is about the MX hosts of a domain: a route's hosts are the operator's choice.
      ...(this.config.delivery.mtaSts ? { mtaSts: domain } : {}),
      ...(dane ? { dane: true as const } : {}),
    };
  }
}
