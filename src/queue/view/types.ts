// The queue's read model as the rest of logmta sees it: plain values describing messages, pieces,
// lanes and writers, built by the queue from its index (view/queue-view.ts) and never referring
// to it. Admin, metrics, the CLI, ODMR and the cluster read the queue only through these (and
// the actions of the facade), so the index (state/) can change without breaking them.
import type { HistoryEntry } from '../record/records.js';

export type { HistoryEntry };

export interface Filter {
  /** A lane name ("hold", "retry-5m", "held-example.org") or kind ("new", "retry", "held", "hold"). */
  lane?: string;
  /** Only pieces with a pending recipient in this domain (case-insensitive). */
  domain?: string;
  /** An address (case-insensitive), "@domain" for any sender there, or "<>" for the null sender. */
  sender?: string;
  /** Only messages that arrived at least this long ago. */
  olderThanMs?: number;
}

export interface RecipientView {
  address: string;
  /**
   * pending: still to deliver; delivered / failed: the outcome recorded in this version of the
   * piece; done: finished in an earlier version (its outcome is in the history).
   */
  state: 'pending' | 'delivered' | 'failed' | 'done';
  last?: string;
  notify?: string[];
  orcpt?: string;
}

export interface PieceView {
  piece: number;
  version: number;
  lane: string;
  laneKind: string;
  /** Next attempt (retry lanes); held lanes wait for ETRN/ATRN or release. */
  due: number;
  /** A delivery of this piece is under way. */
  active: boolean;
  attempts: number;
  lastError?: string;
  recipients: RecipientView[];
  history: HistoryEntry[];
}

export interface MessageView {
  id: string;
  /** Index of the queue directory (config queue.paths) holding it. */
  queue: number;
  arrival: number;
  size: number;
  sender: string;
  envid?: string;
  ret?: string;
  report?: boolean;
  client?: Record<string, string>;
  pieces: PieceView[];
}

export interface SummaryRow {
  domain: string;
  total: number;
  buckets: number[];
}

export interface Summary {
  buckets: string[];
  /** Sum over every message (a message counts once, however many domains it has). */
  total: SummaryRow;
  /** Per destination domain of pending recipients; a message counts once in each of its domains. */
  rows: SummaryRow[];
}

export interface LaneDepth {
  lane: string;
  kind: string;
  /** Live pieces, summed over every queue directory. */
  live: number;
}

export interface HeldDomain {
  domain: string;
  count: number;
  /** Age of the oldest message waiting in the lane (ms); 0 when empty. */
  oldestAgeMs: number;
}

/** One of the longest-queued messages. */
export interface OldMessage {
  id: string;
  arrival: number;
  /** The lane of its most recently added piece ('' if it has none). */
  lane: string;
}

/** The group-commit writer of one queue directory, as counted since the start. */
export interface WriterStats {
  dir: string;
  batches: number;
  records: number;
  bytes: number;
  datasyncs: number;
  /** The writer refuses writes (a full disk being ridden out, or a failed fsync). */
  poisoned: boolean;
  /** Spare segment files (freed segments kept for reuse): ready now, and kept and reused since start. */
  spares: { ready: number; kept: number; reused: number };
}

/** One group commit: its records, bytes and write-plus-fdatasync time. */
export type BatchListener = (records: number, bytes: number, syncMs: number) => void;
