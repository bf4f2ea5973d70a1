// What the incoming checks decide (pure): from the SPF, DKIM and DMARC results of one message and
// the configured policy, either nothing (the message is only annotated) or a refusal sent as the
// reply to the final dot — the client keeps the message, so there is never a bounce for it.
//   - DMARC fail under the sender domain's p=reject (sp= for a subdomain), with dmarc_reject on:
//     550 5.7.1.
//   - With tempfail_on_dns_error on, a temporary DNS error that leaves the verdict open: the DMARC
//     lookup itself failed, or DMARC did not pass and SPF or a DKIM key lookup failed: 451 4.7.24
//     when SPF's lookups failed (RFC 7372), else 451 4.7.1.
// Invariant: a DMARC pass is never refused; with both options off nothing is ever refused.

import type { SmtpReply } from '../smtp/server/hooks.js';

export interface CheckOutcome {
  spf: string;
  /** One result per signature ('none' when unsigned). */
  dkim: string[];
  /** 'pass', 'fail', 'none', 'temperror', 'permerror'. */
  dmarc: string;
  /** The policy that applies to the From: domain (p=, or sp= below the organisational domain). */
  dmarcPolicy: string | undefined;
  /** The From: domain DMARC judged. */
  fromDomain: string | undefined;
}

export interface CheckPolicy {
  dmarcReject: boolean;
  tempfailOnDnsError: boolean;
}

export function decide(o: CheckOutcome, p: CheckPolicy): SmtpReply | null {
  if (o.dmarc === 'pass') return null;
  if (p.tempfailOnDnsError) {
    const spfTemp = o.spf === 'temperror';
    if (o.dmarc === 'temperror' || spfTemp || o.dkim.includes('temperror')) {
      return {
        code: 451,
        enhanced: spfTemp ? '4.7.24' : '4.7.1',
        text: `Temporary DNS error while checking ${spfTemp ? 'SPF' : 'DKIM/DMARC'}${o.fromDomain ? ` for ${o.fromDomain}` : ''}, try again later`,
      };
    }
  }
  if (p.dmarcReject && o.dmarc === 'fail' && o.dmarcPolicy === 'reject') {
    return {
      code: 550,
      enhanced: '5.7.1',
      text: `Message rejected per DMARC policy of ${o.fromDomain ?? 'the From: domain'}`,
    };
  }
  return null;
}
