// What an MTA-STS policy (RFC 8461 §4, §5) changes about one delivery to a domain's MX hosts:
// in enforce mode, only MX hosts its mx patterns match are candidates and TLS with a
// certificate valid for the MX name (checked against the outbound trust store) is required; in
// testing mode, the delivery goes as without a policy, and what enforce would have refused is
// said afterwards; mode none (or no policy) changes nothing.
// Invariants: under enforce no candidate without a matching name is ever handed to the pool and
// the TLS policy is `required` with `verify`, so there is no plain-text fallback; `violation`
// is the one check of a connection against a policy, for both modes.
// Fails: `enforceCandidates` rejects with MtaError MTA_STS_NO_MX (transient, 451 4.7.5) when no
// MX host matches: deferred, never bounced — the domain may fix its MX or its policy.
// DANE goes first where it applies (RFC 8461 §2): an MX host with usable TLSA records (or whose
// TLSA lookup failed, which DANE defers) is kept whatever the mx patterns say, and its own TLS
// policy stands; one whose TLSA records are all unusable gets the policy's verified TLS instead
// of DANE's unauthenticated one.

import { MtaError } from '../../errors.js';
import type { SmtpClient, TlsPolicy } from '../../smtp/client/index.js';
import type { MxCandidate } from '../mx.js';
import type { OutboundTrust } from '../tls-trust.js';
import type { StsApplied } from './policies.js';
import { policyAllows } from './policy.js';

/** The words a failure under the policy begins with: "MTA-STS policy of example.com (id 123)". */
export function policyLabel(a: StsApplied): string {
  return `MTA-STS policy of ${a.domain}${a.id !== undefined ? ` (id ${a.id})` : ''}`;
}

/** The TLS the pool connects with under `a` (undefined: the destination's usual policy). */
export function stsTls(a: StsApplied, trust: OutboundTrust): TlsPolicy | undefined {
  if (a.mode === 'enforce')
    return { mode: 'required', verify: true, secureContext: trust.context, requiredBy: policyLabel(a) };
  // Testing: as today (opportunistic, unchecked), but judged against the same trust store, so
  // that the log can say whether enforce would have accepted the certificate.
  if (a.mode === 'testing') return { mode: 'opportunistic', verify: false, secureContext: trust.context };
  return undefined;
}

/** Under enforce: the candidates whose MX name the policy allows, in their order. */
export function enforceCandidates(
  a: StsApplied,
  candidates: () => Promise<MxCandidate[]>,
): () => Promise<MxCandidate[]> {
  const policy = a.policy;
  if (a.mode !== 'enforce' || policy === undefined) return candidates;
  return async () => {
    const all = await candidates();
    const ok = all
      .filter(
        (c) =>
          c.dane === 'tlsa' || c.dane === 'failed' || (c.name !== undefined && policyAllows(policy, c.name)),
      )
      .map((c) => {
        if (c.dane !== 'unusable') return c;
        const { tls: _dane, ...rest } = c;
        return rest;
      });
    if (ok.length > 0) return ok;
    const names = [...new Set(all.map((c) => c.name ?? c.host))].join(', ');
    throw new MtaError(
      'MTA_STS_NO_MX',
      'transient',
      `${policyLabel(a)}: no MX host matches its mx patterns (${policy.mx.join(', ')}); MX hosts: ${names}`,
      { smtp: { code: 451, enhanced: '4.7.5' } },
    );
  };
}

/**
 * What makes a connection to MX host `name` fall short of policy `a` (testing or enforce), or
 * undefined when it meets it: a name the mx patterns do not match, no TLS, or a certificate not
 * valid for the name.
 */
export function violation(a: StsApplied, client: SmtpClient, name: string | undefined): string | undefined {
  const policy = a.policy;
  if (policy === undefined || a.mode === 'none') return undefined;
  if (name === undefined || !policyAllows(policy, name))
    return `MX host ${name ?? client.connection.remote} matches none of the mx patterns (${policy.mx.join(', ')})`;
  const peer = client.tlsPeer;
  if (peer === undefined) return `no TLS with ${name} (STARTTLS not offered or refused)`;
  if (a.mode === 'enforce' ? !peer.verified : !peer.authorized)
    return `the certificate of ${name} is not valid for it${peer.error !== undefined ? ` (${peer.error})` : ''}`;
  return undefined;
}
