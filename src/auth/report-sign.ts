// DKIM signing of the reports logmta writes itself (bounces, delay warnings, success notices:
// delivery/reports.ts): a report whose From: domain (MAILER-DAEMON@<hostname>) has a [[dkim]] key
// — its own, or a parent's with subdomains = true — gets one DKIM-Signature per such key, made
// with the same keys, tags and signed fields as outgoing mail (dkim-sign.ts). A report is ours,
// as a local submission is: a key's `users` and `networks` (which limit relay clients) do not
// apply. Signed when the report is built, inside the queue's batch, so the signature is stored
// with the report and every delivery attempt — after a restart too — sends the same bytes.
// Invariant: a report with no matching key is returned as it is (the same Buffer); signing never
// drops a report: a key that cannot sign is logged and the report goes on unsigned.

import type { DkimKeyConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { dkimSignaturesSync, keysForDomain } from './dkim-sign.js';
import { fromDomains, splitMessage } from './message.js';

export interface ReportSignerOptions {
  keys: readonly DkimKeyConfig[];
  logger: Logger;
  /** Told every signature added (metrics). */
  onSigned?: (algorithm: string) => void;
}

/** The report, signed when a key matches its From: domain; `now` (ms) is the signature's t=. */
export type ReportSigner = (report: Buffer, now: number) => Buffer;

export function makeReportSigner(o: ReportSignerOptions): ReportSigner {
  return (report, now) => {
    const { header, body } = splitMessage([report]);
    const domains = new Set(fromDomains(header));
    if (domains.size !== 1) return report;
    const keys = keysForDomain(o.keys, [...domains][0] as string);
    if (keys.length === 0) return report;
    let sigs: string[];
    try {
      sigs = dkimSignaturesSync(keys, header, body, now);
    } catch (e) {
      o.logger.error({ err: e }, 'DKIM signing of a report failed; the report goes unsigned');
      return report;
    }
    for (const k of keys) o.onSigned?.(k.algorithm);
    return Buffer.concat([Buffer.from(sigs.join(''), 'latin1'), report]);
  };
}
