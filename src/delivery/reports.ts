// The queue's report hooks (QueueHooks.reports): the report policy — who gets a delivery report
// for what, decided here and nowhere else — and the builder that turns the reports due into
// RFC 3464 messages addressed to the original return path, sent from the null sender, DKIM-signed
// by `sign` when given (auth/report-sign.ts: a key for the report's From: domain). The queue
// appends what it is handed in the same batch as the outcome, so a signature is made once.
import type {
  AcceptInput,
  EnvelopeRecord,
  RcptOutcome,
  RecipientInfo,
  ReportHooks,
  ReportKind,
  ReportRequest,
} from '../queue/index.js';
import { buildDsn, type DsnRecipientReport, shouldNotify } from './dsn.js';
import { withoutPaths } from './public-text.js';

/**
 * The report policy: whether `recipient`'s outcome calls for a report of `kind`. Never a report
 * about a report; otherwise the NOTIFY rule of RFC 3461 (dsn.ts shouldNotify: never to <>,
 * NEVER gets nothing, failures by default). A success is reported only for final delivery here
 * (a Maildir, an LMTP server) and for relaying to a hop without DSN: a next hop that took NOTIFY=SUCCESS reports
 * success itself (RFC 3461 §5.2.2).
 */
export function wantsReport(
  kind: ReportKind,
  envelope: EnvelopeRecord,
  recipient: RecipientInfo,
  outcome: RcptOutcome,
): boolean {
  if (envelope.info.report) return false;
  if (!shouldNotify(envelope.info.sender, kind, recipient.notify)) return false;
  return kind !== 'success' || outcome.relayed === true || outcome.final === true;
}

/** A NOTIFY list naming DELAY, as an envelope's JSON holds it (params.ts keeps the keywords upper case). */
const DELAY_JSON = Buffer.from('"DELAY"');

/**
 * The policy's byte test for envelopes an older logmta wrote (ReportHooks.mayWantDelay): a delay
 * report goes only to a recipient whose NOTIFY names DELAY (shouldNotify), so JSON without the
 * string "DELAY" wants none. Its presence elsewhere (a header line, an error text) only costs the
 * queue a read.
 */
export function mayWantDelay(json: Buffer): boolean {
  return json.includes(DELAY_JSON);
}

/** Signs a built report (the same Buffer when no key applies); `now` is the signing time. */
export type SignReport = (report: Buffer, now: number) => Buffer;

export function makeReporter(hostname: string, sign?: SignReport): ReportHooks {
  return { wants: wantsReport, mayWantDelay, build: makeBuilder(hostname, sign) };
}

function makeBuilder(hostname: string, sign: SignReport | undefined) {
  return (req: ReportRequest): AcceptInput | null => {
    const env = req.envelope;
    const action = req.kind === 'failure' ? 'failed' : req.kind === 'delay' ? 'delayed' : 'delivered';
    const list = req.recipients;
    if (list.length === 0) return null;
    const recipients: DsnRecipientReport[] = list.map(({ info, outcome, retryUntil }) => {
      const r: DsnRecipientReport = {
        address: info.address,
        action: req.kind === 'success' && outcome.relayed ? 'relayed' : action,
        status:
          outcome.enhanced ?? (req.kind === 'failure' ? '5.0.0' : req.kind === 'delay' ? '4.0.0' : '2.0.0'),
      };
      // An outcome the queue made up (expiry, a held piece's warning) had no attempt now.
      if (!outcome.untried) r.lastAttempt = req.now;
      if (info.orcpt) r.orcpt = info.orcpt;
      const mta = remoteMta(outcome.host);
      if (mta !== undefined) r.remoteMta = mta;
      if (outcome.code !== undefined || outcome.text) r.diagnostic = diagnostic(outcome);
      // The queue knows when it gives up: the max_age of the lane the recipient waits in.
      if (req.kind === 'delay' && retryUntil !== undefined) r.willRetryUntil = retryUntil;
      return r;
    });
    const input: Parameters<typeof buildDsn>[0] = {
      reportingMta: hostname,
      returnPath: env.info.sender,
      arrivalDate: env.arrival,
      recipients,
      original: [req.data],
      originalSize: env.info.size,
      now: req.now,
    };
    if (env.info.envid !== undefined) input.envid = env.info.envid;
    if (env.info.ret) input.ret = env.info.ret;
    // Content that could not be converted for a hop (5.6.3) would meet the same wall on its way
    // back inside the report: return its header section only.
    if (list.some(({ outcome }) => outcome.enhanced === '5.6.3')) input.ret = 'HDRS';
    const dsn = buildDsn(input);
    const out: AcceptInput = {
      data: [sign ? sign(dsn.data, req.now) : dsn.data],
      sender: '',
      recipients: [{ address: env.info.sender }],
      report: true,
    };
    if (dsn.body8bit) out.body = '8BITMIME';
    if (dsn.smtputf8) out.smtputf8 = true;
    return out;
  };
}

/**
 * The Remote-MTA of a report (an RFC 3464 "dns" name) from an outcome's host, "name[address]:port"
 * or "address:port": none for a local delivery or an LMTP server on a unix socket, whose
 * "unix:/path" is a file system path and never leaves in a report.
 */
function remoteMta(host: string | undefined): string | undefined {
  if (host === undefined || host === 'local' || host.startsWith('unix:')) return undefined;
  return host.replace(/:\d+$/, '').replace(/\[[^\]]*\]$/, '');
}

/** "smtp; 550 5.1.1 text" — the peer's reply as it was given, enhanced code included. */
function diagnostic(o: { code?: number; enhanced?: string; text?: string }): string {
  const text = o.text ?? '';
  const parts = ['smtp;'];
  if (o.code !== undefined) parts.push(String(o.code));
  if (o.enhanced !== undefined && !text.startsWith(o.enhanced) && o.enhanced !== '4.4.7')
    parts.push(o.enhanced);
  // Every report kind goes to an outside sender: whatever wrote the text, no local path leaves.
  if (text) parts.push(withoutPaths(text));
  return parts.join(' ');
}
