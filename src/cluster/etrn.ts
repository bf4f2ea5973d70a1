// ETRN at any node (RFC 1985 in a cluster). A node that is not a requested domain's home
// forwards the request to the home (`ETRN #domain`, authenticated as a peer) and answers with the
// home's exact count plus what it still holds itself; it flushes its own not-yet-transferred
// mail for the domain to the home, and once that transfer pass is done asks the home for one
// more pass, so mail that was still waiting here is delivered too. Domains homed here are served
// by the local ETRN service as on a single node.
// Invariant: a request from a peer is never forwarded again (a peer's ETRN is served locally
// only), so two nodes that disagree about a home for a moment cannot bounce a request between
// them; the client's rate limit is counted once, at the node it asked, over the whole cluster.
// Fails: a home that cannot be reached makes its part of the answer 458 unless other requested
// lanes have mail; nothing is lost — the mail waits where it is.

import type { Logger } from '../log.js';
import { type EtrnService, etrnReplies, parseEtrnArg } from '../odmr/index.js';
import type { RateGate } from '../odmr/rate.js';
import type { SmtpReply } from '../smtp/protocol/reply.js';
import type { SessionContext } from '../smtp/server/hooks.js';
import type { Clock } from '../util/clock.js';
import type { Directory } from './directory.js';
import type { Homes } from './homes.js';
import { forwardEtrn } from './peer.js';
import type { Transfers } from './transfer.js';

export interface ClusterEtrnOptions {
  service: EtrnService;
  rate: RateGate;
  directory: Directory;
  homes: Homes;
  transfers: () => Transfers | undefined;
  heldCount(domain: string): number;
  /** Our EHLO name towards peers. */
  name: string;
  timeoutMs: number;
  clock: Clock;
  log: Logger;
  isPeer(user: string | undefined): boolean;
}

export function clusterEtrnHook(o: ClusterEtrnOptions) {
  return async (node: string, ctx: Pick<SessionContext, 'client'>): Promise<SmtpReply> => {
    const ip = ctx.client.ip;
    const svc = o.service;
    const req = parseEtrnArg(node);
    if (req === null) return svc.told(ip, node, { reply: etrnReplies.syntax() });
    const lanes = svc.lanesOf(req, ip);
    if (!Array.isArray(lanes)) return svc.told(ip, node, lanes);
    // A peer forwards only lanes it found homed here: serve them here, never forward again.
    if (o.isPeer(ctx.client.auth)) return svc.told(ip, node, svc.startLanes(lanes, req.raw, ip));
    if (!(await o.rate.take(ip))) {
      o.log.warn({ ip, node }, 'etrn refused: rate limit');
      return svc.told(ip, node, { reply: etrnReplies.unable(req.raw) });
    }
    const local: string[] = [];
    const remote = new Map<string, string[]>();
    for (const lane of lanes) {
      await o.homes.ensure(lane);
      const home = o.directory.homeElsewhere(lane);
      if (!home) local.push(lane);
      else {
        const list = remote.get(home.node);
        if (list) list.push(lane);
        else remote.set(home.node, [lane]);
      }
    }
    if (remote.size === 0) return svc.told(ip, node, svc.startLanes(lanes, req.raw, ip));
    let count = 0;
    let refused = false;
    if (local.length > 0) {
      const r = svc.startLanes(local, req.raw, ip);
      count += r.count ?? 0;
      if (r.reply.code === 458) refused = true;
    }
    await Promise.all(
      [...remote].map(async ([home, list]) => {
        const target = o.directory.peer(home);
        if (!target) {
          refused = true;
          return;
        }
        const ours = list.map((l) => o.heldCount(l));
        const answers = await forwardEtrn(target, list, o.name, o.timeoutMs);
        for (const [i, a] of answers.entries()) {
          if (a.code === 253) count += a.count;
          else if (a.code !== 251) {
            refused = true;
            o.log.warn(
              { ip, node, home, lane: a.lane, code: a.code, text: a.text },
              'etrn: home could not be asked',
            );
          }
          // What still waits here goes home, and then the home is asked for one more pass.
          if (a.code !== 0 && (ours[i] ?? 0) > 0) {
            count += ours[i]!;
            const lane = a.lane;
            const t = o.transfers();
            void t
              ?.kick(lane, o.clock.now())
              .then(() => forwardEtrn(target, [lane], o.name, o.timeoutMs))
              .catch(() => {});
          }
        }
        o.log.info(
          { ip, node, home, lanes: list, answers: answers.map((a) => a.code) },
          'etrn forwarded to the home',
        );
      }),
    );
    if (count > 0) return svc.told(ip, node, { reply: etrnReplies.started(req.raw, count), count });
    if (refused) return svc.told(ip, node, { reply: etrnReplies.unable(req.raw) });
    return svc.told(ip, node, { reply: etrnReplies.empty(req.raw), count: 0 });
  };
}
