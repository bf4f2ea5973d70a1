// The end-of-DATA stage that DKIM-signs outgoing mail (pipeline step 4): a message from an
// authenticated client, a local submission, or a client in relay_networks, whose From: domain
// has a [[dkim]] key (or is below one with subdomains = true), gets one DKIM-Signature per such
// key, prepended once, before the message is queued — so the signature is stored with it and
// every delivery attempt sends the same bytes. A key with `users` or `networks` signs only for
// those AUTH identities and relay clients in those blocks (local submissions always): on a host
// shared by several customers, one customer's users cannot get mail in another's name signed.
// Invariant: mail from anyone else passes untouched; a message with no From:, several From:
// domains, or no matching key is not signed (never refused for it). Signing never fails a
// message: a key that cannot sign is logged and the message goes on unsigned.

import type { Cidr } from '../config/index.js';
import { cidrListContains } from '../config/index.js';
import type { DkimKeyConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import type { AcceptStage, DraftMessage, StageVerdict } from '../policy/pipeline.js';
import type { SessionContext } from '../smtp/server/hooks.js';
import type { Clock } from '../util/clock.js';
import { dkimSignatures, keysForDomain } from './dkim-sign.js';
import { fromDomains, splitMessage } from './message.js';
import { isOutgoing } from './outgoing.js';

export interface SignStageOptions {
  keys: readonly DkimKeyConfig[];
  relayNetworks: readonly Cidr[];
  clock: Clock;
  logger: Logger;
  /** Told every signature added (metrics). */
  onSigned?: (algorithm: string) => void;
}

/**
 * Whether this client may have mail signed with `k`. Local submissions always may; a key without
 * `users` and `networks` serves every outgoing client; otherwise an authenticated client must be
 * one of `users`, and an unauthenticated relay client must be in `networks`.
 */
function mayUse(k: DkimKeyConfig, m: DraftMessage, ctx: SessionContext | undefined): boolean {
  if (ctx === undefined || (k.users === undefined && k.networks === undefined)) return true;
  const auth = m.client.auth;
  if (auth !== undefined) return k.users?.includes(auth) === true;
  return k.networks !== undefined && cidrListContains(k.networks, m.client.ip);
}

function keysFor(
  keys: readonly DkimKeyConfig[],
  domain: string,
  m: DraftMessage,
  ctx: SessionContext | undefined,
): DkimKeyConfig[] {
  return keysForDomain(keys, domain).filter((k) => mayUse(k, m, ctx));
}

export function dkimSignStage(o: SignStageOptions): AcceptStage {
  return {
    name: 'dkim-sign',
    async run(m: DraftMessage, ctx: SessionContext | undefined): Promise<StageVerdict> {
      if (!isOutgoing(m, ctx, o.relayNetworks)) return null;
      const { header, body } = splitMessage(m.data);
      const domains = new Set(fromDomains(header));
      if (domains.size !== 1) return null;
      const keys = keysFor(o.keys, [...domains][0] as string, m, ctx);
      if (keys.length === 0) return null;
      let sigs: string[];
      try {
        sigs = await dkimSignatures(keys, header, body, o.clock.now());
      } catch (e) {
        o.logger.error({ id: m.id, err: e }, 'DKIM signing failed; the message goes unsigned');
        return null;
      }
      for (const k of keys) o.onSigned?.(k.algorithm);
      const field = Buffer.from(sigs.join(''), 'latin1');
      m.data.unshift(field);
      m.size += field.length;
      return null;
    },
  };
}
