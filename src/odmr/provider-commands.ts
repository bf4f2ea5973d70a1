// The ODMR provider's command table (RFC 2645 §4): in the initial state only EHLO, AUTH and QUIT
// (and STARTTLS when TLS is configured) are allowed — everything else gets 502; ATRN needs a
// successful AUTH first (530). EHLO lists AUTH (CRAM-MD5 always; PLAIN and LOGIN only under TLS,
// loopback included) and ATRN.
// Invariants: an account can only name its own domains (450 for the whole request otherwise); a
// lane held by another runner gives 451; no mail in any requested lane gives 453; on 250 the
// session hands the socket over at once, so no byte the customer pipelined after ATRN is ever
// read as a server command (it goes to the client role as its first input).
// Fails: handler errors become 451 via the session; nothing here touches the queue's files.

import { auth } from '../smtp/server/commands/auth.js';
import { greet } from '../smtp/server/commands/helo.js';
import { ANY, type CommandSpec, type CommandTable } from '../smtp/server/commands/table.js';
import { notImplemented, quit } from '../smtp/server/commands/misc.js';
import { starttls } from '../smtp/server/commands/starttls.js';
import type { SmtpSession } from '../smtp/server/session.js';
import type { HeldLocks } from './locks.js';
import type { RateGate } from './rate.js';
import { isSmtpDomain } from '../util/domain.js';

/** What one accepted ATRN asks for: the account and its lanes, already locked for this session. */
export interface AtrnRequest {
  user: string;
  /** Lanes served here (empty when every requested domain with mail is homed elsewhere). */
  domains: string[];
  lockOwner: string;
  /** Reversed sessions of other nodes that hold the rest (ATRN at any node, in a cluster). */
  legs?: unknown[];
}

/**
 * ATRN at any node (a cluster): requested domains homed on other nodes are collected there, on
 * the customer's behalf. `split` answers from memory (node → its domains); `open` asks each home
 * (ATRN) and resolves with the homes that reversed (opaque legs, served after our 250) and
 * whether any home refused or could not be reached; `drop` closes legs that will not be served.
 */
export interface AtrnElsewhere {
  split(domains: readonly string[]): Map<string, string[]>;
  open(remote: Map<string, string[]>): Promise<{ legs: unknown[]; trouble: boolean }>;
  drop(legs: unknown[]): void;
}

export interface ProviderCommandDeps {
  /** Domains the account may collect (lower-case), or undefined for an unknown account. */
  domainsOf(user: string): readonly string[] | undefined;
  heldCount(domain: string): number;
  locks: HeldLocks;
  /** AUTH commands per client address (on top of the listener's failure throttle). */
  authRate: RateGate;
  /** Accepted requests by session, read by the provider when the socket is handed over. */
  requests: WeakMap<SmtpSession, AtrnRequest>;
  /** Told of every ATRN reply (events, metrics). */
  onRequest?(ev: { ip: string; user?: string; domains: string[]; code: number }): void;
  /**
   * The requested lanes are locked: if earlier ATRN sessions of this same account hold them
   * (a customer whose line dropped without the provider noticing yet), cut those sessions and
   * resolve once they have let go. Resolves at once when another runner holds them.
   */
  takeOver?(user: string, domains: readonly string[]): Promise<void>;
  /** In a cluster: domains homed on other nodes. Absent: every domain is served here. */
  elsewhere?: AtrnElsewhere;
  /** Whether the account is a cluster peer (a peer's ATRN is always served here, never passed on). */
  isPeer?(user: string): boolean;
}

/** `ATRN [d1,d2,...]`: lower-case domains without trailing dots, or null when malformed. */
export function parseAtrnArgs(args: string): string[] | null {
  if (args.length === 0) return [];
  if (/\s/.test(args)) return null;
  const out: string[] = [];
  for (const part of args.split(',')) {
    let d = part.toLowerCase();
    if (d.endsWith('.')) d = d.slice(0, -1);
    if (!isSmtpDomain(d)) return null;
    if (!out.includes(d)) out.push(d);
  }
  return out;
}

function odmrEhlo(s: SmtpSession, args: string): void {
  if (!greet(s, 'EHLO', args)) return;
  const lines = [`${s.opts.hostname} Hello ${args} [${s.client.ip}]`, 'ENHANCEDSTATUSCODES'];
  if (s.io.startTls && !s.client.tls) lines.push('STARTTLS');
  if (s.client.auth === undefined) lines.push(`AUTH ${s.client.tls ? 'CRAM-MD5 PLAIN LOGIN' : 'CRAM-MD5'}`);
  lines.push('ATRN');
  s.reply(250, undefined, lines);
}

function makeAuth(deps: ProviderCommandDeps) {
  return (s: SmtpSession, args: string): void | Promise<void> => {
    const mech = (args.split(' ')[0] ?? '').toUpperCase();
    if ((mech === 'PLAIN' || mech === 'LOGIN') && !s.client.tls) {
      // Cleartext passwords only under TLS here, even from loopback (RFC 2645 §5).
      s.reply(538, '5.7.11', 'Encryption required for requested authentication mechanism');
      return;
    }
    if (s.client.auth !== undefined) return auth(s, args);
    const ok = deps.authRate.take(s.client.ip);
    const go = (allowed: boolean): void | Promise<void> => {
      if (allowed) return auth(s, args);
      s.reply(421, '4.7.0', `${s.opts.hostname} Too many authentication attempts`);
      s.close();
    };
    return typeof ok === 'boolean' ? go(ok) : ok.then(go);
  };
}

let serial = 0;

function makeAtrn(deps: ProviderCommandDeps) {
  return (s: SmtpSession, args: string): void | Promise<void> => {
    const told = (code: number, domains: string[]): void =>
      deps.onRequest?.({
        ip: s.client.ip,
        ...(s.client.auth !== undefined ? { user: s.client.auth } : {}),
        domains,
        code,
      });
    const user = s.client.auth;
    if (user === undefined) {
      s.badCommand(530, '5.7.0', 'Authentication required');
      told(530, []);
      return;
    }
    const requested = parseAtrnArgs(args);
    if (requested === null) {
      s.badCommand(501, '5.5.4', 'Syntax: ATRN [domain[,domain]...]');
      return;
    }
    const own = deps.domainsOf(user) ?? [];
    const domains = requested.length === 0 ? [...own] : requested;
    if (domains.length === 0 || domains.some((d) => !own.includes(d))) {
      s.opts.logger?.warn(
        { ip: s.client.ip, user, requested: args },
        'atrn refused: domain not of this account',
      );
      s.reply(450, '4.7.1', 'ATRN request refused');
      told(450, domains);
      return;
    }
    // In a cluster, domains homed on other nodes are collected there (never for a peer's request).
    const remote =
      deps.elsewhere && !deps.isPeer?.(user) ? deps.elsewhere.split(domains) : new Map<string, string[]>();
    const away = new Set([...remote.values()].flat());
    // Mail of a domain homed elsewhere that still waits here (not yet transferred) goes too,
    // unless a transfer to its home holds the lane right now (then it reaches the home first).
    // Decided again when the session proceeds (after the homes were asked): a transfer pass can
    // take such a lane meanwhile, and that is no reason to refuse the customer.
    const ownLanes = domains.filter((d) => !away.has(d));
    const leftovers = () =>
      domains.filter((d) => away.has(d) && deps.heldCount(d) > 0 && !deps.locks.isLocked(d));
    const busy = () => ownLanes.some((d) => deps.locks.isLocked(d));
    const proceed = (legs: unknown[], trouble: boolean): void => {
      const here = [...ownLanes, ...leftovers()];
      if (busy()) {
        deps.elsewhere?.drop(legs);
        s.reply(451, '4.3.0', 'Unable to process ATRN request now');
        told(451, domains);
        return;
      }
      const pending = here.reduce((n, d) => n + deps.heldCount(d), 0);
      if (pending === 0 && legs.length === 0) {
        if (trouble) {
          s.reply(451, '4.3.0', 'Unable to process ATRN request now');
          told(451, domains);
        } else {
          s.reply(453, '4.2.0', 'You have no mail');
          told(453, domains);
        }
        return;
      }
      const lockOwner = `atrn:${user}:${++serial}`;
      const lanes = pending > 0 ? here : [];
      if (!deps.locks.tryLock(lanes, lockOwner)) {
        deps.elsewhere?.drop(legs);
        s.reply(451, '4.3.0', 'Unable to process ATRN request now');
        told(451, domains);
        return;
      }
      deps.requests.set(s, { user, domains: lanes, lockOwner, ...(legs.length > 0 ? { legs } : {}) });
      s.opts.logger?.info(
        { ip: s.client.ip, user, domains, pending, homes: [...remote.keys()] },
        'atrn accepted',
      );
      s.reply(250, '2.0.0', 'OK now reversing the connection');
      told(250, domains);
      // The turnaround: flush the 250, stop the server role, and give the socket (with any bytes
      // already read) to the provider, which becomes the SMTP client on it.
      s.handOver();
    };
    // Ask the other homes first, so that the answer is true: 250 only when some node has mail.
    const elsewhere = deps.elsewhere;
    const ask = (): void | Promise<void> =>
      remote.size === 0 || !elsewhere
        ? proceed([], false)
        : elsewhere.open(remote).then(
            (r) => proceed(r.legs, r.trouble),
            () => proceed([], true),
          );
    // A lane held by this account's own earlier session: that session is cut first.
    if (busy() && deps.takeOver) return deps.takeOver(user, [...ownLanes, ...leftovers()]).then(ask);
    return ask();
  };
}

export function odmrCommands(deps: ProviderCommandDeps): CommandTable {
  const verbs = new Map<string, CommandSpec>();
  const no: CommandSpec = { handler: notImplemented, endsGroup: true, phases: ANY };
  for (const v of [
    'HELO',
    'MAIL',
    'RCPT',
    'DATA',
    'BDAT',
    'RSET',
    'NOOP',
    'VRFY',
    'EXPN',
    'HELP',
    'ETRN',
    'TURN',
    'SEND',
    'SOML',
    'SAML',
  ])
    verbs.set(v, no);
  verbs.set('EHLO', { handler: odmrEhlo, endsGroup: true, phases: ANY });
  verbs.set('QUIT', { handler: quit, endsGroup: true, phases: ANY });
  verbs.set('STARTTLS', { handler: starttls, endsGroup: true, phases: ANY });
  verbs.set('AUTH', {
    handler: makeAuth(deps),
    endsGroup: true,
    phases: ['ready'],
    outOfSequence: () => 'Send EHLO first',
  });
  verbs.set('ATRN', { handler: makeAtrn(deps), endsGroup: true, phases: ANY });
  const never = (s: SmtpSession): void => s.badCommand(502, '5.5.1', 'Command not implemented');
  return { verbs, finishData: never, finishBdat: never };
}
