// The delivery engine: the Deliverer the queue calls for each due piece. It splits the piece's
// pending recipients by destination (local Maildir, held ODMR domain, remote next hop), sends
// each group (one transaction per destination, more when the peer answers 452; once more on a new
// connection when a kept one turns out closed before it took anything), classifies every
// recipient's outcome and hands them back to the queue, which commits them before anything is
// considered done. With several destinations, outcomes of finished groups are committed as they
// come, so a crash repeats only what was in flight. Local delivery writes one copy per mailbox
// (user and domain in lower case): recipients that name the same mailbox share its outcome.
import { errorText, MtaError } from '../errors.js';
import type { DeliveryJob, RcptOutcome } from '../queue/index.js';
import type { ConnectionPool } from './pool.js';
import { type MessageBytes, messageData, sendTransaction } from './outbound.js';
import { withoutPaths } from './public-text.js';
import { domainOf, localPartOf } from '../util/domain.js';
import type { Decision, Router } from './router.js';
import { isMailboxName } from '../util/local-part.js';
import { enforceCandidates, policyLabel, stsTls, violation } from './mta-sts/apply.js';
import type { StsApplied, StsPolicies } from './mta-sts/policies.js';
import type { OutboundTrust } from './tls-trust.js';
import type { DaneState, MxCandidate } from './mx.js';

export type LocalDelivery = (
  data: MessageBytes,
  target: { maildir: string; returnPath: string; deliveredTo: string },
) => Promise<void>;

/** One recipient's delivery attempt, as the engine reports it. */
export interface AttemptEvent {
  id: string;
  rcpt: string;
  relay: string;
  status: string;
  code?: number;
  text?: string;
  /** What only the log may say (a mailbox path, an errno message): never part of the outcome's
   *  text, which reaches the sender's reports. */
  detail?: string;
  /** Time the attempt took. */
  ms: number;
  /** MX delivery with MTA-STS on: the mode of the domain's policy ("none" also for no policy). */
  mtaSts?: string;
  /** The TXT id of that policy. */
  mtaStsId?: string;
  /** What fell short of the policy: why enforce deferred, or what testing would have refused. */
  mtaStsFailure?: string;
  /**
   * MX delivery with DANE on: "verified" (the certificate matched the host's TLSA records),
   * "failed" (TLSA records required TLS that no host gave, or their lookup failed), or what was
   * found for the host used: "unusable", "no-tlsa", "insecure" (not DNSSEC-validated), "tlsa"
   * (records found, no connection got as far as TLS).
   */
  dane?: string;
  /** What the certificate matched ("DANE-EE 1 1"), with dane = verified. */
  daneMatch?: string;
}

/** What checks certificates of outbound TLS, and the MTA-STS policies (daemon.ts builds both). */
export interface OutboundSecurity {
  trust?: OutboundTrust;
  sts?: StsPolicies;
}

/** What the MTA-STS policy did to one group's delivery, for its attempt events. */
interface StsNote {
  applied: StsApplied;
  failure?: string;
}

/** What MTA-STS and DANE did to one group's delivery. */
interface RemoteNote {
  sts?: StsNote;
  dane?: string;
  daneMatch?: string;
}

/** DANE states that require TLS of a host (and whose failure is DANE's). */
const DANE_REQUIRES = new Set<DaneState | undefined>(['tlsa', 'unusable', 'failed']);

export interface EngineEvents {
  attempt?(ev: AttemptEvent): void;
}

/**
 * A message rate per destination beyond this node (a cluster's shared GCRA): the milliseconds to
 * wait before sending one message to `key`, or -1 when the next slot is further off than
 * `maxWaitMs` (the message is then deferred).
 */
export type RateBooking = (key: string, maxWaitMs: number) => Promise<number>;

/** Errors that are an enforced MTA-STS policy refusing a delivery (not a host being down). */
const STS_FAILURES = new Set(['TLS_REQUIRED', 'MTA_STS_NO_MX', 'MTA_STS_VIOLATION']);
const isStopping = (e: unknown): boolean => e instanceof MtaError && e.code === 'POOL_STOPPING';

/** The longest a message waits in flight for its destination's rate (beyond: deferred). */
const RATE_WAIT_MS = 30_000;

export class DeliveryEngine {
  readonly stats = { attempts: 0, delivered: 0, deferred: 0, failed: 0, transactions: 0 };

  constructor(
    private readonly router: Router,
    private readonly pool: ConnectionPool,
    private readonly local: LocalDelivery,
    private readonly events: EngineEvents = {},
    private readonly rate?: RateBooking,
    private readonly security: OutboundSecurity = {},
  ) {}

  readonly deliver = async (job: DeliveryJob): Promise<void> => {
    const groups = new Map<string, { decision: Decision; rcpts: number[] }>();
    for (const i of job.pending) {
      const domain = domainOf(job.envelope.info.recipients[i]!.address);
      const decision = this.router.decide(domain);
      const key =
        decision.kind === 'remote'
          ? decision.key
          : decision.kind === 'local'
            ? `local:${domain}`
            : `odmr:${decision.domain}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { decision, rcpts: [] }));
      g.rcpts.push(i);
    }
    const all: RcptOutcome[] = [];
    const several = groups.size > 1;
    const settled = await Promise.allSettled(
      [...groups.values()].map(async (g) => {
        const outs = await this.deliverGroup(job, g.decision, g.rcpts);
        all.push(...outs);
        if (several && outs.some((o) => o.status === 'delivered')) await job.record(outs);
      }),
    );
    // The daemon stops and this message got no connection: nothing was sent for those
    // recipients, so nothing is recorded for them — the next start tries them as they were, at
    // once, instead of as a deferral (what the other groups delivered is recorded above).
    if (settled.some((r) => r.status === 'rejected' && isStopping(r.reason))) return;
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    await job.finish(all);
  };

  private async deliverGroup(job: DeliveryJob, d: Decision, rcpts: number[]): Promise<RcptOutcome[]> {
    this.stats.attempts += rcpts.length;
    const t0 = Date.now();
    let outs: RcptOutcome[];
    const details = new Map<number, string>();
    let sts: StsNote | undefined;
    let dane: RemoteNote | undefined;
    if (d.kind === 'odmr') {
      outs = rcpts.map((r) => ({
        rcpt: r,
        status: 'deferred',
        hold: d.domain,
        text: `held for ODMR collection of ${d.domain}`,
      }));
    } else if (d.kind === 'local') {
      outs = await this.deliverLocal(job, d.local.maildir, rcpts, details);
    } else {
      const note: RemoteNote = {};
      outs = await this.deliverRemote(job, d, rcpts, note);
      sts = note.sts;
      dane = note;
      if (d.etrn) for (const o of outs) if (o.status === 'deferred') o.hold = d.etrn;
    }
    for (const o of outs) {
      this.stats[o.status]++;
      const ev: AttemptEvent = {
        id: job.id,
        rcpt: job.envelope.info.recipients[o.rcpt]!.address,
        relay: o.host ?? d.kind,
        status: o.status,
        ms: Date.now() - t0,
      };
      if (o.code !== undefined) ev.code = o.code;
      if (o.text !== undefined) ev.text = o.text;
      const detail = details.get(o.rcpt);
      if (detail !== undefined) ev.detail = detail;
      if (sts) {
        ev.mtaSts = sts.applied.mode;
        if (sts.applied.id !== undefined) ev.mtaStsId = sts.applied.id;
        if (sts.failure !== undefined) ev.mtaStsFailure = sts.failure;
      }
      if (dane?.dane !== undefined) ev.dane = dane.dane;
      if (dane?.daneMatch !== undefined) ev.daneMatch = dane.daneMatch;
      this.events.attempt?.(ev);
    }
    return outs;
  }

  private async deliverLocal(
    job: DeliveryJob,
    template: string,
    rcpts: number[],
    details: Map<number, string>,
  ): Promise<RcptOutcome[]> {
    const data = await messageData(job);
    const out: RcptOutcome[] = [];
    // One copy per mailbox: a recipient named twice, or in another case (ANN@localhost is
    // ann@localhost), shares the first one's outcome instead of getting the message again.
    const done = new Map<string, RcptOutcome>();
    for (const r of rcpts) {
      const address = job.envelope.info.recipients[r]!.address;
      const user = localPartOf(address).toLowerCase();
      if (!isMailboxName(user)) {
        out.push({
          rcpt: r,
          status: 'failed',
          code: 550,
          enhanced: '5.1.1',
          text: 'mailbox name not allowed',
          host: 'local',
        });
        continue;
      }
      const maildir = template.replaceAll('{user}', user).replaceAll('{domain}', domainOf(address));
      const first = done.get(maildir);
      if (first !== undefined) {
        out.push({ ...first, rcpt: r });
        details.set(r, `maildir ${maildir} (the same mailbox as an earlier recipient: one copy)`);
        continue;
      }
      try {
        await this.local(data.open(), {
          maildir,
          returnPath: job.envelope.info.sender,
          deliveredTo: address,
        });
        out.push({
          rcpt: r,
          status: 'delivered',
          code: 250,
          enhanced: '2.0.0',
          // The text reaches success reports to outside senders: no path (the log has it).
          text: 'delivered to maildir',
          host: 'local',
          final: true,
        });
        done.set(maildir, out[out.length - 1] as RcptOutcome);
        details.set(r, `maildir ${maildir}`);
      } catch (e) {
        const permanent = e instanceof MtaError && e.kind === 'permanent';
        out.push({
          rcpt: r,
          status: permanent ? 'failed' : 'deferred',
          code: e instanceof MtaError && e.smtp ? e.smtp.code : permanent ? 550 : 451,
          enhanced: e instanceof MtaError && e.smtp ? e.smtp.enhanced : permanent ? '5.2.0' : '4.2.0',
          text: withoutPaths(errorText(e)),
          host: 'local',
        });
        done.set(maildir, out[out.length - 1] as RcptOutcome);
        const cause = e instanceof Error && e.cause !== undefined ? `: ${errorText(e.cause)}` : '';
        details.set(r, `maildir ${maildir}${cause}`);
      }
    }
    return out;
  }

  private async deliverRemote(
    job: DeliveryJob,
    d: Extract<Decision, { kind: 'remote' }>,
    rcpts: number[],
    note: RemoteNote,
  ): Promise<RcptOutcome[]> {
    const info = job.envelope.info;
    const sts = d.mtaSts !== undefined ? await this.security.sts?.policyFor(d.mtaSts) : undefined;
    if (sts) note.sts = { applied: sts };
    const trust = this.security.trust;
    const stsPolicy = sts && trust ? stsTls(sts, trust) : undefined;
    // What DANE found for the candidates (router.ts), kept for the attempt's log fields; DANE
    // goes before MTA-STS where it applies (RFC 8461 §2, in apply.ts).
    let daneSeen: MxCandidate[] = [];
    const looked = async () => {
      const c = await d.candidates();
      daneSeen = c;
      return c;
    };
    const candidates = sts ? enforceCandidates(sts, looked) : looked;
    if (this.rate && !d.lmtp) {
      const wait = await this.rate(d.key, RATE_WAIT_MS);
      if (wait < 0)
        return rcpts.map((r) => ({
          rcpt: r,
          status: 'deferred',
          code: 451,
          enhanced: '4.4.5',
          text: `message rate of ${d.key} reached`,
        }));
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    const connect = (fresh: boolean) =>
      this.pool.acquire(
        d.key,
        candidates,
        d.lmtp
          ? // A local mailbox server: LHLO, per-recipient replies, no STARTTLS.
            { lmtp: true, tls: { mode: 'none' } }
          : {
              // verify_tls implies TLS is required (Postfix "verify"): otherwise a failed check
              // would fall back to plain text and deliver unverified, in clear.
              tls: stsPolicy ?? {
                mode: d.requireTls || d.verifyTls ? 'required' : 'opportunistic',
                verify: d.verifyTls,
                ...(d.verifyTls && trust ? { secureContext: trust.context } : {}),
              },
              ...(d.auth ? { auth: { user: d.auth.user, pass: d.auth.password } } : {}),
            },
        // A flush a customer asked for (ETRN, probe) goes first, and past dead-host marks older
        // than the customer's proof that its host is up.
        {
          ...(job.flush
            ? {
                priority: true,
                ...(job.flush.reachableSince !== undefined
                  ? { reachableSince: job.flush.reachableSince }
                  : {}),
              }
            : {}),
          ...(fresh ? { fresh: true } : {}),
          ...(d.selfCheck ? { selfCheck: d.selfCheck } : {}),
          ...(d.addressLimit !== undefined ? { addressLimit: d.addressLimit } : {}),
        },
      );
    // The connection checked against the policy: under enforce, a kept connection made before
    // the policy was known is given up for a new one, and one that still falls short (it
    // cannot, the TLS options forbid it; this is the last line) sends nothing.
    // DANE: a kept connection made before its host's TLSA records were known (plain, or TLS
    // not checked against them) is given up for a new one, made under the records of now.
    const keptMeetsDane = async (lease: Awaited<ReturnType<typeof connect>>): Promise<boolean> => {
      let now: MxCandidate[];
      try {
        now = await looked();
      } catch (e) {
        lease.release(false);
        throw e;
      }
      const c = now.find((x) => x.name !== undefined && x.name === lease.name);
      if (c?.dane === 'tlsa') return lease.client.peerChecked !== undefined;
      if (c?.dane === 'unusable') return lease.client.secure;
      return c?.dane !== 'failed';
    };
    const acquire = async (fresh: boolean) => {
      let lease = await connect(fresh);
      if (d.dane && lease.reused && !(await keptMeetsDane(lease))) {
        lease.release(false);
        lease = await connect(true);
      }
      // A host whose certificate matched its TLSA records: DANE decided, MTA-STS has no say.
      if (!sts || sts.mode === 'none' || lease.client.peerChecked !== undefined) return lease;
      let why = violation(sts, lease.client, lease.name);
      if (why !== undefined && sts.mode === 'enforce' && lease.reused) {
        lease.release(false);
        lease = await connect(true);
        why = violation(sts, lease.client, lease.name);
      }
      if (why === undefined) return lease;
      if (sts.mode === 'testing') {
        note.sts = { applied: sts, failure: why };
        this.security.sts?.reportTesting(sts, lease.host, why);
        return lease;
      }
      lease.release(false);
      throw new MtaError('MTA_STS_VIOLATION', 'transient', `${policyLabel(sts)}: ${why}`, {
        smtp: { code: 451, enhanced: '4.7.5' },
      });
    };
    const send = async (fresh: boolean) => {
      const lease = await acquire(fresh);
      const r = await sendTransaction(
        lease.client,
        job,
        rcpts.map((i) => info.recipients[i]!),
        // LMTP is final delivery: a success DSN says "delivered", not "relayed". Once the end of
        // data is written, the connection goes back to the pool while the reply is awaited: a
        // message waiting for it sends its envelope right behind (in the same write, RFC 2920).
        { host: lease.host, final: d.lmtp === true, onDataSent: () => lease.release(true) },
      );
      this.stats.transactions += r.transactions;
      lease.release(r.reusable);
      if (lease.dane !== undefined) {
        const matched = lease.client.peerChecked;
        note.dane = matched !== undefined ? 'verified' : lease.dane;
        if (matched !== undefined) note.daneMatch = matched;
      }
      return { r, reused: lease.reused };
    };
    let r: Awaited<ReturnType<typeof send>>['r'];
    try {
      const first = await send(false);
      r = first.r;
      // A kept connection the peer had closed (its idle timeout, a limit of messages per session)
      // took nothing of the message: that is no failure of the destination, so the message goes
      // once more at once, on a new connection, instead of waiting for its next retry.
      if (first.reused && r.stale) r = (await send(true)).r;
    } catch (e) {
      if (isStopping(e)) throw e;
      const permanent = e instanceof MtaError && e.kind === 'permanent';
      const smtp = e instanceof MtaError ? e.smtp : undefined;
      if (sts?.mode === 'enforce' && e instanceof MtaError && STS_FAILURES.has(e.code))
        note.sts = { applied: sts, failure: errorText(e) };
      const first = daneSeen[0]?.dane;
      if (first !== undefined)
        note.dane =
          e instanceof MtaError &&
          e.code === 'TLS_REQUIRED' &&
          daneSeen.some((c) => DANE_REQUIRES.has(c.dane))
            ? 'failed'
            : first;
      return rcpts.map((r) => ({
        rcpt: r,
        status: permanent ? 'failed' : 'deferred',
        code: smtp?.code ?? (permanent ? 550 : 451),
        enhanced: smtp?.enhanced ?? (permanent ? '5.4.0' : '4.4.1'),
        text: errorText(e),
      }));
    }
    return r.outcomes.map((o, i) => ({ ...o, rcpt: rcpts[i]! }));
  }
}
