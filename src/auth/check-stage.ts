// The end-of-DATA stage that judges mail from the outside (pipeline step 2): SPF (RFC 7208) on
// the MAIL FROM (the HELO name for the null sender), DKIM (RFC 6376) on every signature, DMARC
// (RFC 7489) alignment of the From: domain — all by mailauth, every lookup through our resolver.
// The verdict is prepended as one Authentication-Results field (RFC 8601) with our authserv-id,
// after any field claiming that id was removed; then policy.ts may refuse the message.
// Invariants: mail from our own users (authenticated, local, relay_networks) is not checked —
// it is what the signing stage signs; the checks read the message as received, before anything
// is removed; at most MAX_SIGNATURES signatures (the topmost) are verified, so a message cannot
// make us look up hundreds of keys; the whole check is bounded by `timeoutMs` (past it every
// result is temperror).
// Fails: never throws for what the message or DNS contain; a refusal is a verdict.

import { Readable } from 'node:stream';
import type { Cidr } from '../config/index.js';
import type { DnsResolver } from '../dns/types.js';
import { lookupFunction } from '../dns/types.js';
import type { Logger } from '../log.js';
import type { AcceptStage, DraftMessage, StageVerdict } from '../policy/pipeline.js';
import type { SessionContext } from '../smtp/server/hooks.js';
import { setTimer } from '../util/clock.js';
import { headerFields, splitMessage } from './message.js';
import { type CheckOutcome, type CheckPolicy, decide } from './policy.js';
import { authResultsField, removeOurResults } from './results.js';
import { isOutgoing } from './outgoing.js';

export interface CheckStageOptions extends CheckPolicy {
  /** authserv-id of our Authentication-Results (the host name by default). */
  authservId: string;
  resolver: DnsResolver;
  relayNetworks: readonly Cidr[];
  timeoutMs: number;
  logger: Logger;
  /** Told every result (metrics). */
  onResult?: (method: 'spf' | 'dkim' | 'dmarc', result: string) => void;
}

interface Checked {
  outcome: CheckOutcome;
  /** Result clauses for Authentication-Results, in order: spf, dkim..., dmarc. */
  clauses: string[];
}

type Authenticate = typeof import('mailauth').authenticate;

/** DKIM signatures verified per message, topmost first (opendkim verifies 3 by default). */
export const MAX_SIGNATURES = 5;

/**
 * The message as the verifier sees it: unchanged, unless it has more than MAX_SIGNATURES
 * DKIM-Signature fields — then the extra ones (the lowest) are left out of the verifier's copy.
 * Each signature is verified on its own, so leaving others out changes none of the verdicts.
 */
function forVerifier(data: readonly Buffer[]): Buffer[] {
  const { header, body } = splitMessage(data);
  const fields = headerFields(header);
  let seen = 0;
  const keep = fields.filter((f) => f.name.toLowerCase() !== 'dkim-signature' || ++seen <= MAX_SIGNATURES);
  if (seen <= MAX_SIGNATURES) return data as Buffer[];
  return [Buffer.from(`${keep.map((f) => `${f.raw}\r\n`).join('')}\r\n`, 'latin1'), ...body];
}

async function check(
  authenticate: Authenticate,
  m: DraftMessage,
  o: CheckStageOptions,
  lookup: ReturnType<typeof lookupFunction>,
): Promise<Checked> {
  const r = await authenticate(Readable.from(forVerifier(m.data)), {
    ip: m.client.ip.replace(/^::ffff:(?=\d+\.)/i, ''),
    ...(m.client.helo ? { helo: m.client.helo } : {}),
    ...(m.sender !== '' ? { sender: m.sender } : {}),
    mta: o.authservId,
    resolver: lookup as never,
    disableArc: true,
    disableBimi: true,
    trustReceived: false,
  });
  const dkim = r.dkim.results ?? [];
  const clauses: string[] = [];
  if (r.spf) clauses.push(r.spf.info);
  for (const d of dkim) clauses.push(d.info);
  if (r.dmarc) clauses.push(r.dmarc.info);
  const from = r.dmarc ? (r.dmarc.status.header as { from?: string } | undefined)?.from : undefined;
  return {
    outcome: {
      spf: r.spf ? r.spf.status.result : 'none',
      dkim: dkim.length > 0 ? dkim.map((d) => d.status.result) : ['none'],
      dmarc: r.dmarc ? r.dmarc.status.result : 'none',
      dmarcPolicy: r.dmarc ? r.dmarc.policy : undefined,
      fromDomain: from,
    },
    clauses,
  };
}

function timedOut(): Checked {
  const why = '(checks timed out)';
  return {
    outcome: {
      spf: 'temperror',
      dkim: ['temperror'],
      dmarc: 'temperror',
      dmarcPolicy: undefined,
      fromDomain: undefined,
    },
    clauses: [`spf=temperror ${why}`, `dkim=temperror ${why}`, `dmarc=temperror ${why}`],
  };
}

/** Replaces the header of `m` (after our Received:) with `header`, keeping the body chunks. */
function replaceHeader(m: DraftMessage, start: number, header: Buffer, body: Buffer[]): void {
  const rebuilt = Buffer.concat([header, Buffer.from('\r\n')]);
  m.data.splice(start, m.data.length - start, rebuilt, ...body);
  m.size = m.data.reduce((n, c) => n + c.length, 0);
}

export async function authCheckStage(o: CheckStageOptions): Promise<AcceptStage> {
  // Loaded only when the checks are on: a daemon without them never loads mailauth.
  const { authenticate } = await import('mailauth');
  const lookup = lookupFunction(o.resolver);
  return {
    name: 'auth-check',
    async run(m: DraftMessage, ctx: SessionContext | undefined): Promise<StageVerdict> {
      if (isOutgoing(m, ctx, o.relayNetworks)) return null;
      let cancelTimer = (): void => {};
      const deadline = new Promise<Checked>((res) => {
        cancelTimer = setTimer(o.timeoutMs, () => res(timedOut()));
      });
      let c: Checked;
      try {
        c = await Promise.race([check(authenticate, m, o, lookup), deadline]);
      } catch (e) {
        o.logger.warn({ id: m.id, err: e }, 'authentication checks failed');
        c = timedOut();
        c.clauses = c.clauses.map((x) => x.replace('checks timed out', 'checks failed'));
      } finally {
        cancelTimer();
      }
      const verdict = decide(c.outcome, o);
      if (o.onResult) {
        o.onResult('spf', c.outcome.spf);
        for (const d of c.outcome.dkim) o.onResult('dkim', d);
        o.onResult('dmarc', c.outcome.dmarc);
      }
      o.logger.info(
        {
          id: m.id,
          spf: c.outcome.spf,
          dkim: c.outcome.dkim.join(','),
          dmarc: c.outcome.dmarc,
          ...(verdict ? { refused: verdict.code } : {}),
        },
        'authentication',
      );
      if (verdict) return { reply: verdict };
      // Forged results claiming our authserv-id go before ours is added (RFC 8601 §5).
      const start = m.received !== undefined && m.data[0] === m.received ? 1 : 0;
      const { header, body } = splitMessage(m.data.slice(start));
      const stripped = removeOurResults(header, o.authservId);
      if (stripped.removed > 0) replaceHeader(m, start, stripped.header, body);
      const field = Buffer.from(authResultsField(o.authservId, c.clauses), 'latin1');
      m.data.unshift(field);
      m.size += field.length;
      return null;
    },
  };
}
