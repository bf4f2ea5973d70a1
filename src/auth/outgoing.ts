// Which mail is ours to send (DKIM-signed, not checked) and which comes from the outside
// (checked, never signed): one rule for both stages, so no message is both or neither.

import type { Cidr } from '../config/index.js';
import { cidrListContains } from '../config/index.js';
import type { DraftMessage } from '../policy/pipeline.js';
import type { SessionContext } from '../smtp/server/hooks.js';

/** Mail we send for our users: authenticated, locally submitted (no session), or from relay_networks. */
export function isOutgoing(
  m: DraftMessage,
  ctx: SessionContext | undefined,
  relayNetworks: readonly Cidr[],
): boolean {
  return ctx === undefined || m.client.auth !== undefined || cidrListContains(relayNetworks, m.client.ip);
}
