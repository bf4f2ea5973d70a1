// The read model over every queue directory (Queues): the per-directory answers of
// queue-view.ts merged — messages in id order across directories, summary rows and lane depths
// summed, the oldest messages of all. Read-only, like the views it merges.
import { bucketLabels, emptyRow, sortedRows } from './summary.js';
import type { QueueView } from './queue-view.js';
import type { Filter, HeldDomain, LaneDepth, MessageView, OldMessage, Summary, SummaryRow } from './types.js';

/** Messages read per batch of envelope reads in listPieces. */
const LIST_BATCH = 2048;

/** Ids of the live messages matching the filter, ascending, each with its directory's index. */
async function matchingRefs(
  views: readonly QueueView[],
  filter: Filter,
  now: number,
): Promise<Array<{ id: number; qi: number }>> {
  const per = await Promise.all(views.map((v) => v.matching(filter, now)));
  const refs = per.flatMap((ids, qi) => ids.map((id) => ({ id, qi })));
  return refs.sort((a, b) => a.id - b.id);
}

/** Ids of the live messages matching the filter, oldest first, read from the index alone. */
export async function matchIds(views: readonly QueueView[], filter: Filter, now: number): Promise<number[]> {
  return (await matchingRefs(views, filter, now)).map((r) => r.id);
}

/** Live messages matching the filter, oldest first, with only their matching pieces. */
export async function listPieces(
  views: readonly QueueView[],
  filter: Filter,
  now: number,
  limit = Number.POSITIVE_INFINITY,
): Promise<MessageView[]> {
  const refs = await matchingRefs(views, filter, now);
  const out: MessageView[] = [];
  for (let i = 0; i < refs.length && out.length < limit; i += LIST_BATCH) {
    const batch = refs.slice(i, i + LIST_BATCH);
    // The envelopes of a batch are read together, per directory.
    const got = await Promise.all(
      views.map((v, qi) => {
        const ids = batch.filter((r) => r.qi === qi).map((r) => r.id);
        return ids.length > 0 ? v.messages(ids, filter, now, qi) : new Map<number, MessageView>();
      }),
    );
    for (const r of batch) {
      if (out.length >= limit) break;
      const m = got[r.qi]!.get(r.id);
      if (m) out.push(m);
    }
  }
  return out;
}

/** The summary (qshape) of the live messages matching the filter, counted in the index alone. */
export async function summary(views: readonly QueueView[], filter: Filter, now: number): Promise<Summary> {
  const labels = bucketLabels();
  const total = emptyRow('TOTAL', labels.length);
  const byDomain = new Map<string, SummaryRow>();
  for (const v of views) await v.summarize(filter, now, labels.length, total, byDomain);
  return { buckets: labels, total, rows: sortedRows(byDomain) };
}

const KIND_ORDER: Record<string, number> = { new: 0, retry: 1, held: 2, hold: 3 };

/** new, then the retry ladder by delay, then held domains, then the operator hold lane. */
function laneOrder(a: LaneDepth, b: LaneDepth): number {
  const k = (KIND_ORDER[a.kind] ?? 9) - (KIND_ORDER[b.kind] ?? 9);
  if (k !== 0) return k;
  return a.lane.localeCompare(b.lane, 'en', { numeric: true });
}

/** Live pieces per lane (every lane but `data`), summed over the directories, in lane order. */
export function laneDepths(views: readonly QueueView[]): LaneDepth[] {
  const m = new Map<string, LaneDepth>();
  for (const v of views) v.laneDepths(m);
  return [...m.values()].sort(laneOrder);
}

/** The held lanes by domain, most mail first. */
export function heldSummary(views: readonly QueueView[], now: number): HeldDomain[] {
  const m = new Map<string, HeldDomain>();
  for (const v of views) v.heldSummary(now, m);
  return [...m.values()].sort((a, b) => b.count - a.count || a.domain.localeCompare(b.domain));
}

/** The `n` longest-queued messages of every directory, oldest first. */
export function oldest(views: readonly QueueView[], n: number): OldMessage[] {
  return views
    .flatMap((v) => v.oldest(n))
    .sort((a, b) => a.arrival - b.arrival)
    .slice(0, n);
}
