// Where mail goes in a cluster, answered from memory for the router (delivery/router.ts
// Redirects): an ETRN/ODMR domain whose home is another node is relayed to that node's SMTP,
// authenticated with the cluster secret; while this node drains, every other non-local domain
// goes to a live peer chosen by rendezvous hashing, so a drained queue spreads over the others.
// Invariant: no I/O here. A domain with no known home is held here (and its home is looked up
// in the background); a home that is dead is still the target — the mail is deferred, waits in
// this node's held lane for the domain, and moves when the home is back.
// Fails: never throws.

import { type HostPort, parseHostPort } from '../config/index.js';
import type { PeerTarget, Redirects } from '../delivery/router.js';
import type { Homes } from './homes.js';
import type { Membership } from './membership.js';
import { rendezvous } from './rendezvous.js';

/** The cluster user a node authenticates as ("cluster:<node>"), with the shared secret. */
export const PEER_USER_PREFIX = 'cluster:';

/** A peer's advertised "host:port" (config/net.ts's grammar); undefined when it is none. */
export function parseAddress(s: string): HostPort | undefined {
  try {
    return parseHostPort(s);
  } catch {
    return undefined;
  }
}

export class Directory implements Redirects {
  draining = false;
  /** Domains held here for now whatever their home says (a disagreement seen), until when. */
  private readonly suspended = new Map<string, number>();

  constructor(
    private readonly self: string,
    private readonly secret: string,
    private readonly homes: Homes,
    private readonly membership: Membership,
  ) {}

  get credentials(): { user: string; password: string } {
    return { user: `${PEER_USER_PREFIX}${this.self}`, password: this.secret };
  }

  /** A peer's SMTP (or ODMR) address from its last heartbeat record. */
  peer(node: string, which: 'smtp' | 'odmr' = 'smtp'): PeerTarget | undefined {
    const rec = this.membership.get(node);
    const addr = rec === undefined ? undefined : parseAddress(which === 'smtp' ? rec.smtp : (rec.odmr ?? ''));
    if (!addr) return undefined;
    return { node, host: addr.host, port: addr.port, auth: this.credentials };
  }

  /** The home of a held domain when it is another node we know how to reach. */
  homeElsewhere(domain: string): PeerTarget | undefined {
    if (this.suspended.size > 0) {
      const until = this.suspended.get(domain);
      if (until !== undefined) {
        if (until > Date.now()) return undefined;
        this.suspended.delete(domain);
      }
    }
    const home = this.homes.homeOf(domain);
    if (home === undefined) {
      void this.homes.ensure(domain);
      return undefined;
    }
    if (home === this.self) return undefined;
    return this.peer(home);
  }

  /**
   * A peer sent us mail of a domain we believe it is the home of: the two of us disagree (one
   * missed a change). The mail is held here, not sent back, for `ms` — so a disagreement costs
   * one transfer per transfer_interval instead of a loop — while the homes are re-read.
   */
  disagreement(domain: string, ms: number): void {
    this.suspended.set(domain, Date.now() + ms);
    void this.homes.reload();
  }

  drainTarget(domain: string): PeerTarget | undefined {
    if (!this.draining) return undefined;
    const others = this.membership.live({ withoutDraining: true }).filter((n) => n !== this.self);
    const node = rendezvous(domain, others);
    return node === undefined ? undefined : this.peer(node);
  }
}
