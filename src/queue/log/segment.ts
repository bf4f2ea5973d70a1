// Segment naming and lane directory layout. A queue directory holds `lanes/<lane>/<seq>.seg`
// files; `seq` is a zero-padded decimal that only grows within a lane, so lexical order is log
// order. Pure helpers, no fs.

export const SEGMENT_SUFFIX = '.seg';

export function segmentName(seq: number): string {
  return `${String(seq).padStart(10, '0')}${SEGMENT_SUFFIX}`;
}

/** The sequence number of a segment file name, or undefined if it is not one. */
export function parseSegmentName(name: string): number | undefined {
  const m = /^(\d{10})\.seg$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

export type LaneKind = 'new' | 'retry' | 'held' | 'hold' | 'data';

export interface LaneName {
  name: string;
  kind: LaneKind;
  /** retry lanes: their fixed delay in ms. */
  delay?: number;
  /** held lanes: the domain whose mail they keep. */
  domain?: string;
}

export function retryLaneName(delayMs: number): string {
  return `retry-${Math.round(delayMs / 1000)}s`;
}

export function heldLaneName(domain: string): string {
  return `held-${domain.toLowerCase()}`;
}

/** Classifies a lane directory name; undefined for names that are not lanes. */
export function parseLaneName(name: string): LaneName | undefined {
  if (name === 'new' || name === 'hold' || name === 'data') return { name, kind: name };
  const r = /^retry-(\d+)s$/.exec(name);
  if (r) return { name, kind: 'retry', delay: Number(r[1]) * 1000 };
  const h = /^held-([a-z0-9][a-z0-9.-]*)$/.exec(name);
  if (h) return { name, kind: 'held', domain: h[1]! };
  return undefined;
}
