// The queue's report hook: turns a request for a delivery report (failure, delay, success)
// into an RFC 3464 message addressed to the original return path, sent from the null sender.
// The queue already refuses reports to <> and reports about reports; this adds nothing else.
import type { AcceptInput, ReportRequest } from '../queue/types.js';
import { buildDsn, type DsnRecipientReport } from './dsn.js';
import { withoutPaths } from './public-text.js';

export function makeReporter(hostname: string, maxAgeMs: number) {
  return (req: ReportRequest): AcceptInput | null => {
    const env = req.envelope;
    const action = req.kind === 'failure' ? 'failed' : req.kind === 'delay' ? 'delayed' : 'delivered';
    // RFC 3461 §5.2.2: a next hop that took NOTIFY=SUCCESS (it offers DSN) reports success
    // itself; we report only final delivery here (local) and relaying to a hop without DSN.
    const list =
      req.kind === 'success'
        ? req.recipients.filter(({ outcome }) => outcome.relayed === true || outcome.host === 'local')
        : req.recipients;
    if (list.length === 0) return null;
    const recipients: DsnRecipientReport[] = list.map(({ info, outcome }) => {
      const r: DsnRecipientReport = {
        address: info.address,
        action: req.kind === 'success' && outcome.relayed ? 'relayed' : action,
        status:
          outcome.enhanced ?? (req.kind === 'failure' ? '5.0.0' : req.kind === 'delay' ? '4.0.0' : '2.0.0'),
        lastAttempt: req.now,
      };
      if (info.orcpt) r.orcpt = info.orcpt;
      if (outcome.host && outcome.host !== 'local')
        r.remoteMta = outcome.host.replace(/:\d+$/, '').replace(/\[[^\]]*\]$/, '');
      if (outcome.code !== undefined || outcome.text) r.diagnostic = diagnostic(outcome);
      if (req.kind === 'delay') r.willRetryUntil = env.arrival + maxAgeMs;
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
      data: [dsn.data],
      sender: '',
      recipients: [{ address: env.info.sender }],
      report: true,
    };
    if (dsn.body8bit) out.body = '8BITMIME';
    if (dsn.smtputf8) out.smtputf8 = true;
    return out;
  };
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
