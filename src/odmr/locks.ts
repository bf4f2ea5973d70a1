// Which held lanes are being emptied right now, shared by the ETRN runners and the ODMR
// provider: a lane has at most one runner (an ETRN flush or an ATRN session), so two sessions
// never deliver the same piece and an ATRN for a busy lane gets 451 — unless the lane is held by
// an earlier session of the same account, which the new one may cut (LockSession).
// Invariant: a domain is locked by at most one owner; release by a non-owner is ignored.
// Fails: never throws.

/** The ATRN session behind a lock owner: whose it is, how to cut it, when it is over. */
export interface LockSession {
  user: string;
  cut(): void;
  done: Promise<unknown>;
}

export class HeldLocks {
  private readonly owners = new Map<string, string>();
  private readonly sessions = new Map<string, LockSession>();

  /** Locks every domain or none: false when any of them is already locked. */
  tryLock(domains: readonly string[], owner: string): boolean {
    const keys = domains.map((d) => d.toLowerCase());
    if (keys.some((k) => this.owners.has(k))) return false;
    for (const k of keys) this.owners.set(k, owner);
    return true;
  }

  isLocked(domain: string): boolean {
    return this.owners.has(domain.toLowerCase());
  }

  release(domains: readonly string[], owner: string): void {
    for (const d of domains) {
      const k = d.toLowerCase();
      if (this.owners.get(k) === owner) this.owners.delete(k);
    }
    if (![...this.owners.values()].includes(owner)) this.sessions.delete(owner);
  }

  ownerOf(domain: string): string | undefined {
    return this.owners.get(domain.toLowerCase());
  }

  /** Tells which ATRN session holds the locks of `owner` (so a newer session of the account can take over). */
  describe(owner: string, session: LockSession): void {
    if ([...this.owners.values()].includes(owner)) this.sessions.set(owner, session);
  }

  session(owner: string): LockSession | undefined {
    return this.sessions.get(owner);
  }

  /** Domains locked now (for logs and tests). */
  locked(): string[] {
    return [...this.owners.keys()];
  }
}
