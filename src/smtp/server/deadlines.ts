// Deadlines of one SMTP server session against slow clients (slowloris): unlike an idle timer,
// which any byte restarts, these count from when the server started waiting for a whole unit.
// - command: a command line (or SASL line, or a TLS handshake) must be complete within
//   commandTimeoutMs of the moment the server became ready for it (its previous reply);
// - data line: in DATA, each line of text must be complete within dataLineTimeoutMs of the end
//   of the previous one (or of the 354);
// - data rate: a DATA body, or the chunks of a BDAT transaction, may take dataLineTimeoutMs
//   plus one second per minDataRate octets received (Postfix's smtpd_min_data_rate rule); a
//   client below the rate is cut once that allowance is spent. minDataRate 0 turns it off.
// Time during which the server itself does not read — a hook or commit is pending, the queue
// asked to pause — is never counted against the client (pause/resume shift every start).
// Pure bookkeeping on times the caller passes in: no timers (the listener's sweep asks
// expired()), no I/O. Never throws.

export interface DeadlineLimits {
  commandTimeoutMs: number;
  dataLineTimeoutMs: number;
  /** Octets per second; 0 = no rate rule. */
  minDataRate: number;
}

/** What ran out: the wait for a command, for a data line, or the data-rate allowance. */
export type Expiry = 'command' | 'line' | 'rate';

/** What the session is waiting for now. */
export type Waiting = 'command' | 'line' | 'chunk' | 'none';

export class Deadlines {
  /** Start of the wait for the current command line or data line. */
  private waitSince: number;
  /** Start of the current DATA body / BDAT transaction (null = none) and its octets so far. */
  private transferSince: number | null = null;
  private transferOctets = 0;
  /** When the server stopped reading (null = it reads). */
  private pausedAt: number | null = null;

  constructor(
    private readonly limits: DeadlineLimits,
    now: number,
  ) {
    this.waitSince = now;
  }

  /** The server is ready for the next unit (it has read a whole line, or replied). */
  ready(now: number): void {
    this.waitSince = now;
  }

  /** Message data starts (354 sent, or the first BDAT of a transaction read). */
  startTransfer(now: number): void {
    if (this.transferSince !== null) return;
    this.transferSince = now;
    this.transferOctets = 0;
    this.waitSince = now;
  }

  /** `octets` of message data read; `lineEnded` when they held the end of a line. */
  data(octets: number, lineEnded: boolean, now: number): void {
    this.transferOctets += octets;
    if (lineEnded) this.waitSince = now;
  }

  /** The body or BDAT transaction is over. */
  endTransfer(): void {
    this.transferSince = null;
    this.transferOctets = 0;
  }

  get inTransfer(): boolean {
    return this.transferSince !== null;
  }

  /** The server stops reading for its own reasons (a pending hook, a full queue buffer). */
  pause(now: number): void {
    if (this.pausedAt === null) this.pausedAt = now;
  }

  /** The server reads again: the pause is not the client's time. */
  resume(now: number): void {
    if (this.pausedAt === null) return;
    const d = Math.max(0, now - this.pausedAt);
    this.pausedAt = null;
    this.waitSince += d;
    if (this.transferSince !== null) this.transferSince += d;
  }

  /** Which deadline has passed at `now`, given what the session waits for (null: none). */
  expired(now: number, waiting: Waiting): Expiry | null {
    if (this.pausedAt !== null) return null;
    const l = this.limits;
    if (waiting === 'command' && now - this.waitSince > l.commandTimeoutMs) return 'command';
    if (waiting === 'line' && now - this.waitSince > l.dataLineTimeoutMs) return 'line';
    if (this.transferSince !== null && l.minDataRate > 0) {
      const allowed = l.dataLineTimeoutMs + (this.transferOctets * 1000) / l.minDataRate;
      if (now - this.transferSince > allowed) return 'rate';
    }
    return null;
  }
}
