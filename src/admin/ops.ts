// The operations of the control interface, as a table of op name → handler (shared by the UNIX
// socket and the HTTP admin). Inspection reads the queue's read model (Queues.listPieces,
// describe, summary, matchIds); every change goes through the queue's operator actions (hold,
// release, remove, bounce, flushMessage), each of which
// appends its records and a history entry and resolves only once they are durable — so an
// action that answered "done" survives a crash right after.
// Failure: a bad argument is ADMIN_BAD_REQUEST; an id that is not queued is reported in
// `missing` (one queued but with nothing to do, in `unchanged`), not thrown, so one stale id
// does not hide the others' results.
import { parseDuration } from '../config/index.js';
import { MtaError } from '../errors.js';
import {
  type ActionOutcome,
  type Filter,
  formatId,
  heldLaneNameOf,
  parseId,
  parseLaneName,
  type Queues,
  retryLaneName,
} from '../queue/index.js';
import type { Clock } from '../util/clock.js';
import type { Injector } from './inject.js';
import {
  badRequest,
  ERR_UNKNOWN_OP,
  notFound,
  optBool,
  optNumber,
  optString,
  stringList,
} from './protocol.js';

export interface AdminDeps {
  queues: Queues;
  clock: Clock;
  /** Local submission (sendmail); absent = the op is refused. */
  inject?: Injector;
  /** Facts about the running daemon for `status` (listeners, data dir, ...). */
  info?: () => Record<string, unknown>;
  /**
   * Whether `domain` is an ODMR domain: its held mail goes only to the customer's ATRN, so
   * `flush --domain` leaves it alone (an attempt could only put it back).
   */
  isOdmrDomain?: (domain: string) => boolean;
  /**
   * Told of every `flush` and `release` before it runs: the operator says the hosts are worth
   * trying now, so the delivery pool forgets its dead-host marks (`postqueue -f` does the same).
   */
  onFlush?: () => void;
  /** More ops from other parts (the cluster's "cluster.*"), by name. */
  extra?: () => ReadonlyMap<string, OpHandler>;
}

export type Args = Record<string, unknown>;
export type OpHandler = (args: Args) => Promise<unknown>;

export interface ActionResult {
  /** Ids acted on, with the number of pieces (envelopes) each action touched. */
  done: Array<{ id: string; pieces: number }>;
  /** Ids given that are not in the queue. */
  missing: string[];
  /**
   * Ids in the queue that the action had nothing to do to: already held (hold), not held
   * (release), not deferred (flush).
   */
  unchanged: string[];
  /**
   * Ids with pieces left alone because a delivery of them (an attempt, a flush, an ATRN session)
   * was still in flight when the daemon stopped waiting: try again later.
   */
  busy: Array<{ id: string; pieces: number }>;
}

type ActionName = 'hold' | 'release' | 'delete' | 'bounce' | 'flush';

const LANE_KINDS = new Set(['new', 'hold', 'retry', 'held']);

/**
 * A lane filter as the operator writes it: a kind, a lane name, or a retry lane by its delay in
 * any notation ("retry-5m" is the lane retry-300s). Anything else is refused, so a typo is not
 * answered with an empty queue.
 */
function laneFilter(want: string): string {
  const w = want.trim().toLowerCase();
  if (LANE_KINDS.has(w)) return w;
  const retry = /^retry-(.+)$/.exec(w);
  if (retry) {
    try {
      return retryLaneName(parseDuration(retry[1]!));
    } catch {
      // not a delay: refused below
    }
  }
  const held = /^held-(.+)$/.exec(w);
  const heldName = held ? heldLaneNameOf(held[1]!) : undefined;
  if (heldName !== undefined) return heldName;
  if (parseLaneName(w) !== undefined) return w;
  throw badRequest(
    `not a lane: ${JSON.stringify(want)} (new, hold, retry, held, retry-<delay> like retry-5m, held-<domain>)`,
  );
}

function filterOf(args: Args): Filter {
  const f: Filter = {};
  const lane = optString(args, 'lane');
  const domain = optString(args, 'domain');
  const sender = optString(args, 'sender');
  const older = optNumber(args, 'olderThanMs');
  if (lane !== undefined) f.lane = laneFilter(lane);
  if (domain !== undefined) f.domain = domain;
  if (sender !== undefined) f.sender = sender;
  if (older !== undefined) f.olderThanMs = older;
  return f;
}

function parseIds(args: Args): number[] {
  const ids = stringList(args, 'ids');
  return ids.map((s) => {
    const id = parseId(s.trim());
    if (id === undefined) throw badRequest(`not a queue id: ${JSON.stringify(s)}`);
    return id;
  });
}

async function act(queues: Queues, ids: number[], name: ActionName): Promise<ActionResult> {
  const res: ActionResult = { done: [], missing: [], unchanged: [], busy: [] };
  for (const id of ids) {
    let r: ActionOutcome;
    switch (name) {
      case 'hold':
        r = await queues.hold(id);
        break;
      case 'release':
        r = await queues.release(id);
        break;
      case 'delete':
        r = await queues.remove(id);
        break;
      case 'bounce':
        r = await queues.bounce(id);
        break;
      case 'flush':
        r = await queues.flushMessage(id);
        break;
    }
    if (r.pieces > 0) res.done.push({ id: formatId(id), pieces: r.pieces });
    if (r.busy > 0) res.busy.push({ id: formatId(id), pieces: r.busy });
    else if (r.pieces === 0) (queues.has(id) ? res.unchanged : res.missing).push(formatId(id));
  }
  return res;
}

export function makeOps(deps: AdminDeps): Map<string, OpHandler> {
  const { queues, clock } = deps;
  const ops = new Map<string, OpHandler>();

  ops.set('status', async () => {
    const lanes: Record<string, number> = {};
    for (const l of queues.laneDepths()) lanes[l.lane] = l.live;
    return {
      pid: process.pid,
      now: clock.now(),
      messages: queues.messageCount(),
      lanes,
      heldDomains: queues.heldDomains(),
      poisoned: queues.poisoned,
      ...(deps.info?.() ?? {}),
    };
  });

  ops.set('list', async (args) => {
    const now = clock.now();
    const limit = optNumber(args, 'limit');
    return { now, messages: await queues.listPieces(filterOf(args), now, limit) };
  });

  ops.set('show', async (args) => {
    const s = optString(args, 'id');
    const id = s === undefined ? undefined : parseId(s.trim());
    if (id === undefined) throw badRequest('"id" must be a queue id');
    const view = await queues.describe(id, { data: optBool(args, 'data') });
    if (!view) throw notFound(`message ${formatId(id)} is not in the queue`);
    const { data, ...rest } = view;
    return data ? { ...rest, data: data.toString('base64') } : rest;
  });

  ops.set('summary', async (args) => {
    const now = clock.now();
    return { now, ...(await queues.summary(filterOf(args), now)) };
  });

  /** Ids matching a filter (what an action by filter would touch). */
  ops.set('match', async (args) => {
    const now = clock.now();
    return { ids: (await queues.matchIds(filterOf(args), now)).map(formatId) };
  });

  for (const name of ['hold', 'release', 'delete', 'bounce'] as const) {
    ops.set(name, async (args) => {
      const ids = parseIds(args);
      // A release is an attempt now, like a flush: past the dead-host marks of the outage.
      if (name === 'release') deps.onFlush?.();
      return act(queues, ids, name);
    });
  }

  ops.set('flush', async (args) => {
    const ids = parseIds(args);
    deps.onFlush?.();
    const domain = optString(args, 'domain')?.toLowerCase().replace(/\.$/, '');
    if (ids.length > 0) return { ...(await act(queues, ids, 'flush')), retry: 0, held: 0 };
    if (domain === undefined)
      return { done: [], missing: [], unchanged: [], busy: [], retry: queues.flushRetries(), held: 0 };
    // A held ETRN domain: run its lane like an ETRN would — past older dead-host marks, as
    // postqueue -f re-enables dead sites — the attempts go on after we answer. An ODMR domain's
    // mail waits for its customer's ATRN: it is only counted.
    const inLane = queues.heldCount(domain);
    const odmr = deps.isOdmrDomain?.(domain) === true;
    const held = odmr ? 0 : inLane;
    if (held > 0) void queues.flushHeld(domain, { reachableSince: clock.now() }).catch(() => {});
    const now = clock.now();
    const r = await act(queues, await queues.matchIds({ lane: 'retry', domain }, now), 'flush');
    return { ...r, missing: [], unchanged: [], retry: r.done.length, held, waiting: odmr ? inLane : 0 };
  });

  ops.set('inject', async (args) => {
    if (!deps.inject) throw new MtaError('ADMIN_NO_INJECT', 'permanent', 'local submission is not available');
    const sender = optString(args, 'sender') ?? '';
    const recipients = stringList(args, 'recipients');
    const data = optString(args, 'data');
    if (data === undefined) throw badRequest('"data" (base64) is required');
    const user = optString(args, 'user');
    return deps.inject({
      sender,
      recipients,
      data: Buffer.from(data, 'base64'),
      ...(user !== undefined ? { user } : {}),
    });
  });

  return ops;
}

/** Runs one op by name; unknown names are ADMIN_UNKNOWN_OP. */
export async function runOp(
  ops: Map<string, OpHandler>,
  op: string,
  args: Args = {},
  extra?: () => ReadonlyMap<string, OpHandler>,
): Promise<unknown> {
  const h = ops.get(op) ?? extra?.().get(op);
  if (!h) throw new MtaError(ERR_UNKNOWN_OP, 'permanent', `unknown operation "${op}"`);
  return h(args);
}
