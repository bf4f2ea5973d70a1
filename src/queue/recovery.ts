// Recovery: the only way a queue starts. Scans every lane oldest segment first, validates the
// framing, cuts a torn tail off the newest segment of a lane, and rebuilds the index: the
// current envelope of every piece (highest version not ended), deltas, data locations,
// reference counts, lane positions. Then repair.ts undoes what a crash in the middle of a
// multi-file batch can leave (a move without its Done: the old version wins), pieces whose data
// never became durable are ended, corrupt segments are salvaged and set aside, and garbage is
// marked. Only envelope prefixes are decoded during the scan (and the flag byte after them), never
// the JSON; an older logmta's envelope in a held lane, which has no flag byte, gets a byte search
// instead (outcomes.ts unflaggedWarnPending).
// Every state this handles is listed in docs/queue-states.md.
import type { QueueCore } from './core.js';
import type { QueueFs } from './log/fs.js';
import { parseLaneName, parseSegmentName, segmentName } from './log/segment.js';
import { laneSegments, missingSegments, PEEK_BYTES, segmentCut } from './log/lane-scan.js';
import { ReadAhead } from './log/read-ahead.js';
import { scanSegment } from './log/reader.js';
import type { GroupWriter } from './log/writer.js';
import { FRAME_HEADER } from './record/frame.js';
import type { IdSource } from './ids.js';
import {
  CHUNK_PREFIX,
  DATA_PREFIX,
  decodeChunkHead,
  decodeDataId,
  decodeDelta,
  decodeDone,
  decodeEnvelopeHead,
  DONE_REPAIR,
  ENV_UNFLAGGED,
  ENV_WARN_PENDING,
  envelopeFlags,
  formatId,
  RT_CHUNK,
  RT_DATA,
  RT_DELTA,
  RT_DONE,
  RT_ENVELOPE,
} from './record/records.js';
import { type OldVersion, reviveIncompleteMoves, salvageSegment, setAside } from './repair.js';
import { NO_SLOT, UNPLACED } from './state/tables.js';

export interface RecoveryReport {
  lanes: number;
  segments: number;
  bytes: number;
  records: number;
  liveMessages: number;
  livePieces: number;
  tornTails: Array<{ segment: string; offset: number; cut: number }>;
  corruptions: Array<{
    segment: string;
    offset: number;
    reason: string;
    setAsideAs: string;
    salvaged: number;
  }>;
  missingSegments: string[];
  orphanData: number;
  /** Messages whose envelope was found without data: ended (an accept that never completed, or corruption). */
  missingData: string[];
  /** Pieces restored to their old version because the move that superseded it did not complete. */
  repaired: number;
  /** Spare segment files found in spare/ and kept (ready, or zeroed again), log/spares.ts. */
  spares: number;
  ms: number;
}

interface QueueLike {
  dir: string;
  fs: QueueFs;
  core: QueueCore;
  writer: GroupWriter;
  ids: IdSource;
  clock: { now(): number };
}

/** Lane directories listed at once while planning. */
const PLAN_CONCURRENCY = 16;
/** Files read ahead of the scan at most; beyond the next one, only small ones up to the bytes. */
const READ_AHEAD_FILES = 8;
const READ_AHEAD_BYTES = 8 * 1024 * 1024;

/** `f` of every item, at most `limit` at a time; the results in the items' order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  f: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        out[i] = await f(items[i]!);
      } catch (e) {
        failed = true; // the others stop at their next item; the first error is the answer
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Grows the message rows (and their index) once to what the rest of a lane is likely to need,
 * at its rate so far of new messages per byte, instead of by half again each time they fill:
 * each growth copies every column, and a million messages were a dozen copies. Only when the
 * rows would run out within the estimate; a lane that holds fewer than estimated leaves the
 * difference unused, up to the half a growth step would have left anyway.
 */
function reserveAhead(M: QueueCore['msgs'], estimate: number): void {
  if (estimate * 1.05 <= M.cap) return;
  M.reserve(Math.ceil(Math.max(estimate * 1.05, M.cap * 1.5)));
}

export async function recover(
  q: QueueLike,
  onProgress?: (done: number, total: number) => void,
): Promise<RecoveryReport> {
  const t0 = performance.now();
  const { fs, core, writer } = q;
  const P = core.pieces;
  const M = core.msgs;
  core.recovering = true;
  const report: RecoveryReport = {
    lanes: 0,
    segments: 0,
    bytes: 0,
    records: 0,
    liveMessages: 0,
    livePieces: 0,
    tornTails: [],
    corruptions: [],
    missingSegments: [],
    orphanData: 0,
    missingData: [],
    repaired: 0,
    spares: 0,
    ms: 0,
  };
  await fs.mkdirp(`${q.dir}/lanes`);
  // A fresh queue's directories must be durable before anything in them is acknowledged.
  await fs.syncDir(`${q.dir}/lanes`);
  await fs.syncDir(q.dir);
  const quarantined = await fs.readdir(`${q.dir}/quarantine`);
  const laneNames = (await fs.readdir(`${q.dir}/lanes`)).filter((n) => parseLaneName(n) !== undefined).sort();
  // Sizes first, for progress and read-ahead. Lanes are listed a few at a time: a queue of a
  // thousand held domains is a thousand directories, and one listing after the other would be
  // thousands of thread-pool round trips in a row before the first byte is read.
  const plan = await mapLimited(laneNames, PLAN_CONCURRENCY, async (name) => {
    const seqs = (await fs.readdir(`${q.dir}/lanes/${name}`))
      .map(parseSegmentName)
      .filter((s): s is number => s !== undefined)
      .sort((a, b) => a - b);
    const sizes: number[] = [];
    for (const s of seqs) sizes.push(await fs.size(`${q.dir}/lanes/${name}/${segmentName(s)}`));
    return { lane: name, seqs, sizes };
  });
  let total = 0;
  const sizeOf = new Map<string, number>();
  for (const { lane, seqs, sizes } of plan)
    for (let i = 0; i < seqs.length; i++) {
      total += sizes[i]!;
      sizeOf.set(`${q.dir}/lanes/${lane}/${segmentName(seqs[i]!)}`, sizes[i]!);
    }
  // Older versions seen without their Done yet: "msgId:piece:version" -> where they are.
  const superseded = new Map<string, OldVersion>();
  // Highest piece number in any Delta or Done, so a piece number is never used twice.
  const topPiece = new Map<number, number>();
  // The highest message id seen: ids made after recovery are above it (ids.ts observe).
  let topId = 0;
  const notePiece = (msgId: number, piece: number) => {
    if (msgId > topId) topId = msgId;
    if (piece > 0 && piece > (topPiece.get(msgId) ?? 0)) topPiece.set(msgId, piece);
  };
  const corrupt: Array<{ lane: string; seq: number; offset: number }> = [];
  // Files in the order the scan wants them, so that the next is read while one is scanned.
  const files = new ReadAhead(
    plan.flatMap(({ lane, seqs }) => seqs.map((s) => `${q.dir}/lanes/${lane}/${segmentName(s)}`)),
    (path) => fs.readFile(path),
    { maxFiles: READ_AHEAD_FILES, maxBytes: READ_AHEAD_BYTES, sizes: sizeOf },
  );
  let done = 0;
  let lastProgress = 0;
  for (const { lane: laneName, seqs, sizes } of plan) {
    const lane = core.lane(laneName);
    report.lanes++;
    report.missingSegments.push(...missingSegments(laneName, seqs, quarantined));
    let lastSeq = 0;
    let lastEnd = 0;
    // Every message has a piece, as a rule: the pieces' rows are reserved for those known so
    // far at once, not grown step by step (each step copies every column).
    P.reserve(M.count);
    const laneRows = M.rows;
    const laneBytes = sizes.reduce((a, b) => a + b, 0);
    let laneDone = 0;
    const pathOf = (seq: number) => `${q.dir}/lanes/${laneName}/${segmentName(seq)}`;
    const peek = (seq: number): Promise<Buffer> =>
      fs.read(pathOf(seq), 0, Math.min(PEEK_BYTES, sizeOf.get(pathOf(seq)) ?? 0));
    for await (const { seq, buf, newest } of laneSegments(seqs, (seq) => files.get(pathOf(seq)), peek)) {
      const path = pathOf(seq);
      if (laneDone > 0) reserveAhead(M, M.rows + ((M.rows - laneRows) / laneDone) * (laneBytes - laneDone));
      laneDone += buf.length;
      report.segments++;
      report.bytes += buf.length;
      lane.seg(seq);
      const scan = scanSegment(buf, newest, (r) => {
        report.records++;
        switch (r.type) {
          case RT_DATA: {
            const id = decodeDataId(r.body);
            const m = M.slotFor(id, 0);
            core.adoptData(m, lane, seq, r.offset + FRAME_HEADER + DATA_PREFIX, r.body.length - DATA_PREFIX);
            if (id > topId) topId = id;
            break;
          }
          case RT_CHUNK: {
            const c = decodeChunkHead(r.body);
            const m = M.slotFor(c.msgId, 0);
            core.adoptChunk(
              m,
              lane,
              seq,
              r.offset + FRAME_HEADER + CHUNK_PREFIX,
              r.body.length - CHUNK_PREFIX,
              c.offset,
              c.last,
            );
            if (c.msgId > topId) topId = c.msgId;
            break;
          }
          case RT_ENVELOPE: {
            const h = decodeEnvelopeHead(r.body);
            const m = M.slotFor(h.msgId, h.arrival);
            M.arrival[m] = h.arrival;
            if (h.msgId > topId) topId = h.msgId;
            let p = core.pieceOf(m, h.piece);
            if (p === NO_SLOT) p = core.addPiece(m, h.piece);
            else if (P.version[p]! >= h.version) {
              // An older version than one already seen: dead unless we never see its Done.
              if (P.version[p]! > h.version)
                superseded.set(`${h.msgId}:${h.piece}:${h.version}`, {
                  lane: laneName,
                  seq,
                  off: r.offset,
                  len: r.length,
                  deltas: [],
                });
              break;
            } else if (core.isLive(p)) {
              superseded.set(`${h.msgId}:${h.piece}:${P.version[p]}`, {
                lane: core.laneOf(p).name,
                seq: P.seq[p]!,
                off: P.off[p]!,
                len: P.len[p]!,
                deltas: [...(core.deltas.get(p)?.keys() ?? [])],
              });
            }
            let flags = envelopeFlags(r.body);
            // An older logmta's envelope (no flag byte): whether a warning is pending is known
            // from its bytes only. It matters for held lanes alone (expire.ts), so only their
            // envelopes get the byte search; everywhere else it is taken as no flag.
            if (flags === ENV_UNFLAGGED)
              flags = lane.kind === 'held' && core.unflaggedWarnPending(r.body) ? ENV_WARN_PENDING : 0;
            core.adoptEnvelope(p, lane, h, seq, r.offset, r.length, flags);
            break;
          }
          case RT_DELTA: {
            const d = decodeDelta(r.body, false);
            notePiece(d.msgId, d.piece);
            const m = M.byId.get(d.msgId);
            if (m === undefined) break;
            const p = core.pieceOf(m, d.piece);
            if (p !== NO_SLOT && core.isLive(p) && P.version[p] === d.version)
              core.applyDelta(p, d.rcpt, d.outcome);
            else superseded.get(`${d.msgId}:${d.piece}:${d.version}`)?.deltas.push(d.rcpt);
            break;
          }
          case RT_DONE: {
            const d = decodeDone(r.body);
            notePiece(d.msgId, d.piece);
            superseded.delete(`${d.msgId}:${d.piece}:${d.version}`);
            const m = M.byId.get(d.msgId);
            if (m === undefined) break;
            const p = core.pieceOf(m, d.piece);
            if (p !== NO_SLOT && core.isLive(p) && P.version[p] === d.version)
              core.killPiece(p, d.reason, 1, false);
            break;
          }
        }
      });
      const cut = segmentCut(scan, buf.length, newest);
      if (cut) {
        // A torn tail (or torn header) is what a crash mid-write leaves: cut it off for good,
        // before anything is appended, so that no byte recovery did not validate is left after
        // the new end of the log. A zero-filled tail is cut too, but it is not damage.
        await fs.truncate(path, cut.at);
        if (cut.torn)
          report.tornTails.push({
            segment: `${laneName}/${segmentName(seq)}`,
            offset: cut.at,
            cut: buf.length - cut.at,
          });
      }
      if (scan.corruption) {
        corrupt.push({ lane: laneName, seq, offset: scan.corruption.offset });
        report.corruptions.push({
          segment: `${laneName}/${segmentName(seq)}`,
          offset: scan.corruption.offset,
          reason: scan.corruption.reason,
          setAsideAs: '',
          salvaged: 0,
        });
      }
      lastSeq = seq;
      lastEnd = scan.header === undefined ? -1 : scan.end;
      done += buf.length;
      if (onProgress && (done - lastProgress > 64 * 1024 * 1024 || done === total)) {
        lastProgress = done;
        onProgress(done, total);
      }
    }
    // Appends continue in the newest segment unless it is corrupt or headerless.
    const newestCorrupt = corrupt.some((c) => c.lane === laneName && c.seq === lastSeq);
    if (seqs.length > 0) writer.setTail(laneName, lastSeq, lastEnd, newestCorrupt || lastEnd < 0);
  }
  onProgress?.(total, total);
  q.ids.observe(topId);
  for (const [id, piece] of topPiece) {
    const m = M.byId.get(id);
    if (m !== undefined && M.nextPieceNo[m]! <= piece) M.nextPieceNo[m] = piece + 1;
  }
  const ctx = { dir: q.dir, fs, core, writer, now: q.clock.now() };

  // Moves whose batch did not complete: the old version wins (repair.ts).
  report.repaired = await reviveIncompleteMoves(ctx, superseded);

  // Messages: count live ones, drop dead pieces and orphans, account data.
  core.recovering = false;
  // Walks the rows, not a copy of the id index: a million [id, slot] pairs were 90 MB of heap
  // left for the first full collection after start-up. Releasing a row only marks it free.
  const rows = M.rows;
  for (let m = 0; m < rows; m++) {
    const id = M.id[m]!;
    if (id < 0) continue; // a released row
    let dead = false;
    for (let p = M.head[m]!; p !== NO_SLOT; p = P.next[p]!) if (!core.isLive(p)) dead = true;
    if (dead) for (const p of core.piecesOf(m)) if (!core.isLive(p)) core.releaseDeadPiece(p);
    if (M.head[m] === NO_SLOT) {
      // Data without an envelope: an accept that never committed (a stream cut off, a crash
      // before the batch was durable). Never counted, so its segments are garbage.
      if (M.dataSeq[m] !== UNPLACED || core.hasPartialChunks(m)) report.orphanData++;
      core.forgetRecoveryData(m);
      M.dataSeq[m] = UNPLACED;
      M.release(m);
      continue;
    }
    if (M.dataSeq[m] === UNPLACED) {
      core.forgetRecoveryData(m);
      // Envelopes without data: a split accept whose data file never became durable (so it was
      // never acknowledged), or data lost to corruption. Nothing can be delivered: end them.
      report.missingData.push(formatId(id));
      for (const p of core.piecesOf(m)) core.killPiece(p, DONE_REPAIR, 1);
      continue;
    }
    core.accountAdoptedData(m);
    report.liveMessages++;
    for (let p = M.head[m]!; p !== NO_SLOT; p = P.next[p]!) report.livePieces++;
  }

  // Salvage the valid records of corrupt segments that are still needed (repair.ts).
  for (const c of corrupt) {
    const r = report.corruptions.find((x) => x.segment === `${c.lane}/${segmentName(c.seq)}`)!;
    r.salvaged = await salvageSegment(ctx, c.lane, c.seq, c.offset);
  }
  // Everything repaired above is durable before a corrupt segment leaves its lane.
  await writer.commit();
  for (const c of corrupt) {
    const r = report.corruptions.find((x) => x.segment === `${c.lane}/${segmentName(c.seq)}`)!;
    r.setAsideAs = await setAside(ctx, c.lane, c.seq);
    core.lane(c.lane).segs.delete(c.seq);
  }

  core.markRecoveredGarbage();
  report.ms = performance.now() - t0;
  return report;
}
