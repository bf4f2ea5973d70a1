// Segment naming and lane directory layout. A queue directory holds `lanes/<lane>/<seq>.seg`
// files; `seq` is a zero-padded decimal that only grows within a lane, so lexical order is log
// order. Pure helpers, no fs.
import { isMailDomain } from '../../util/domain.js';

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

/** The longest file name Linux file systems take (ext4, xfs, btrfs, tmpfs). */
export const NAME_MAX = 255;

/**
 * The directory name of a domain's held lane: `held-<domain>` (format 1's name) when that fits
 * in NAME_MAX, else `@<domain>` (the only other form; domains of 251–253 characters). Throws a
 * RangeError for what is not a mail domain (util/domain.ts, the grammar the config validator
 * uses), so every domain the configuration accepts has a lane name, and that name parses back.
 */
export function heldLaneName(domain: string): string {
  const d = domain.toLowerCase();
  if (!isMailDomain(d)) throw new RangeError(`no held lane can be named after ${JSON.stringify(domain)}`);
  const v1 = `held-${d}`;
  return v1.length <= NAME_MAX ? v1 : `@${d}`;
}

/** The held lane name of a domain, or undefined when it is not a mail domain (never throws). */
export function heldLaneNameOf(domain: string): string | undefined {
  return isMailDomain(domain.toLowerCase()) ? heldLaneName(domain) : undefined;
}

/**
 * Classifies a lane directory name; undefined for names that are not lanes (ignored). Only the
 * names the encoders above produce parse: each lane has exactly one name.
 */
export function parseLaneName(name: string): LaneName | undefined {
  if (name === 'new' || name === 'hold' || name === 'data') return { name, kind: name };
  const r = /^retry-(\d+)s$/.exec(name);
  if (r) return { name, kind: 'retry', delay: Number(r[1]) * 1000 };
  const domain = name.startsWith('held-') ? name.slice(5) : name.startsWith('@') ? name.slice(1) : undefined;
  if (domain !== undefined && isMailDomain(domain) && heldLaneName(domain) === name)
    return { name, kind: 'held', domain };
  return undefined;
}
