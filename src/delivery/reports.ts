// The queue's report hook: turns a request for a delivery report (failure, delay, success)
// into an RFC 3464 message addressed to the original return path, sent from the null sender.
// The queue already refuses reports to <> and reports about reports; this adds nothing else.
import type { AcceptInput, ReportRequest } from '../queue/types.js';
import { buildDsn, type DsnRecipientReport } from './dsn.js';

export function makeReporter(hostname: string, maxAgeMs: number) {
  return (req: ReportRequest): AcceptInput | null => {
    const env = req.envelope;
    const action = req.kind === 'failure' ? 'failed' : req.kind === 'delay' ? 'delayed' : 'delivered';
    const recipients: DsnRecipientReport[] = req.recipients.map(({ info, outcome }) => {
      const r: DsnRecipientReport = {
        address: info.address,
        action: req.kind === 'success' && outcome.relayed ? 'relayed' : action,
        status: outcome.enhanced ?? (req.kind === 'failure' ? '5.0.0' : req.kind === 'delay' ? '4.0.0' : '2.0.0'),
        lastAttempt: req.now,
      };
      if (info.orcpt) r.orcpt = info.orcpt;
      if (outcome.host && outcome.host !== 'local') r.remoteMta = outcome.host.replace(/:\d+$/, '');
      if (outcome.code !== undefined || outcome.text) r.diagnostic = `smtp; ${outcome.code ?? ''} ${outcome.text ?? ''}`.trim();
      if (req.kind === 'delay') r.willRetryUntil = env.arrival + maxAgeMs;
      return r;
    });
    const input: Parameters<typeof buildDsn>[0] = {
      reportingMta: hostname,
      returnPath: env.info.sender,
      arrivalDate: env.arrival,
      recipients,
      original: [req.data],
      now: req.now,
    };
    if (env.info.envid !== undefined) input.envid = env.info.envid;
    if (env.info.ret) input.ret = env.info.ret;
    const dsn = buildDsn(input);
    const out: AcceptInput = { data: [dsn.data], sender: '', recipients: [{ address: env.info.sender }], report: true };
    if (dsn.body8bit) out.body = '8BITMIME';
    if (dsn.smtputf8) out.smtputf8 = true;
    return out;
  };
}
