// `queue summary` (Postfix's qshape): live messages counted per destination domain of their
// pending recipients and by age. The buckets and the counting of rows are pure; the counting
// from the index is in queue-view.ts, the same figures as summarize() over listed messages.
import { domainOf } from '../../util/domain.js';
import type { MessageView, Summary, SummaryRow } from './types.js';

/** qshape's age buckets, in minutes: [0,5) [5,10) [10,20) [20,40) [40,80) [80,160) [160,∞). */
export const AGE_BUCKETS_MIN = [0, 5, 10, 20, 40, 80, 160] as const;

export function bucketLabels(): string[] {
  return AGE_BUCKETS_MIN.map((m, i) => {
    const next = AGE_BUCKETS_MIN[i + 1];
    return next === undefined ? `${m}m+` : `${m}-${next}m`;
  });
}

export function ageBucket(ageMs: number): number {
  const min = ageMs / 60_000;
  let b = 0;
  for (let i = 0; i < AGE_BUCKETS_MIN.length; i++) if (min >= AGE_BUCKETS_MIN[i]!) b = i;
  return b;
}

/** Counts per destination domain by age, like Postfix's qshape. */
export function summarize(messages: readonly MessageView[], now: number): Summary {
  const labels = bucketLabels();
  const total = emptyRow('TOTAL', labels.length);
  const byDomain = new Map<string, SummaryRow>();
  for (const m of messages) {
    const b = ageBucket(Math.max(0, now - m.arrival));
    total.total++;
    total.buckets[b]!++;
    const domains = new Set<string>();
    for (const p of m.pieces)
      for (const r of p.recipients) if (r.state === 'pending') domains.add(domainOf(r.address));
    for (const d of domains) countRow(byDomain, d, b, labels.length);
  }
  return { buckets: labels, total, rows: sortedRows(byDomain) };
}

export function emptyRow(domain: string, n: number): SummaryRow {
  return { domain, total: 0, buckets: new Array<number>(n).fill(0) };
}

export function countRow(rows: Map<string, SummaryRow>, d: string, b: number, n: number, by = 1): void {
  let row = rows.get(d);
  if (!row) rows.set(d, (row = emptyRow(d, n)));
  row.total += by;
  row.buckets[b]! += by;
}

export function sortedRows(rows: Map<string, SummaryRow>): SummaryRow[] {
  return [...rows.values()].sort((a, b) => b.total - a.total || a.domain.localeCompare(b.domain));
}
