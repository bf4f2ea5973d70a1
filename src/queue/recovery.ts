// Recovery: the only way a queue starts. Scans every lane oldest segment first, validates the
// framing, cuts a torn tail off the newest segment of a lane, sets corrupt segments aside after
// salvaging their valid live records, and rebuilds the index: the current envelope of every
// piece (highest version not ended), deltas, data locations, reference counts, lane positions.
// Then it repairs what a crash in the middle of a two-file batch can leave (an old version
// without its Done) and reclaims garbage. Only envelope prefixes are decoded, never the JSON.
// Every state this handles is listed in docs/queue-states.md.
import type { QueueCore } from './core.js';
import type { QueueFs } from './log/fs.js';
import { parseLaneName, parseSegmentName, segmentName } from './log/segment.js';
import { scanSegment } from './log/reader.js';
import type { GroupWriter } from './log/writer.js';
import { FRAME_HEADER } from './record/frame.js';
import type { IdSource } from './ids.js';
import {
  DATA_PREFIX,
  decodeDataId,
  decodeDelta,
  decodeDone,
  decodeEnvelopeHead,
  DONE_REPAIR,
  formatId,
  RT_DATA,
  RT_DELTA,
  RT_DONE,
  RT_ENVELOPE,
} from './record/records.js';
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
  missingData: string[];
  repaired: number;
  ms: number;
}

interface QueueLike {
  dir: string;
  fs: QueueFs;
  core: QueueCore;
  writer: GroupWriter;
  ids: IdSource;
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
    ms: 0,
  };
  await fs.mkdirp(`${q.dir}/lanes`);
  const laneNames = (await fs.readdir(`${q.dir}/lanes`)).filter((n) => parseLaneName(n) !== undefined).sort();
  // Sizes first, for progress.
  const plan: Array<{ lane: string; seqs: number[]; sizes: number[] }> = [];
  let total = 0;
  for (const name of laneNames) {
    const seqs = (await fs.readdir(`${q.dir}/lanes/${name}`))
      .map(parseSegmentName)
      .filter((s): s is number => s !== undefined)
      .sort((a, b) => a - b);
    const sizes: number[] = [];
    for (const s of seqs) {
      const n = await fs.size(`${q.dir}/lanes/${name}/${segmentName(s)}`);
      sizes.push(n);
      total += n;
    }
    plan.push({ lane: name, seqs, sizes });
  }
  // Older versions seen without their Done yet: "msgId:piece:version" -> lane name.
  const superseded = new Map<string, string>();
  const corrupt: Array<{ lane: string; seq: number }> = [];
  let done = 0;
  let lastProgress = 0;
  for (const { lane: laneName, seqs } of plan) {
    const lane = core.lane(laneName);
    report.lanes++;
    if (lane.kind !== 'data') {
      for (let i = 1; i < seqs.length; i++) {
        for (let s = seqs[i - 1]! + 1; s < seqs[i]!; s++)
          report.missingSegments.push(`${laneName}/${segmentName(s)}`);
      }
    }
    let lastSeq = 0;
    let lastEnd = 0;
    for (let i = 0; i < seqs.length; i++) {
      const seq = seqs[i]!;
      const newest = i === seqs.length - 1;
      const path = `${q.dir}/lanes/${laneName}/${segmentName(seq)}`;
      const buf = await fs.readFile(path);
      report.segments++;
      report.bytes += buf.length;
      lane.seg(seq);
      const scan = scanSegment(buf, newest, (r) => {
        report.records++;
        switch (r.type) {
          case RT_DATA: {
            const id = decodeDataId(r.body);
            let m = M.byId.get(id);
            if (m === undefined) m = core.newMessage(id, 0);
            core.adoptData(m, lane, seq, r.offset + FRAME_HEADER + DATA_PREFIX, r.body.length - DATA_PREFIX);
            q.ids.observe(id);
            break;
          }
          case RT_ENVELOPE: {
            const h = decodeEnvelopeHead(r.body);
            let m = M.byId.get(h.msgId);
            if (m === undefined) m = core.newMessage(h.msgId, h.arrival);
            M.arrival[m] = h.arrival;
            q.ids.observe(h.msgId);
            let p = core.pieceOf(m, h.piece);
            if (p === NO_SLOT) p = core.addPiece(m, h.piece);
            else if (P.version[p]! >= h.version) {
              // An older version than one already seen: dead unless we never see its Done.
              if (P.version[p]! > h.version) superseded.set(`${h.msgId}:${h.piece}:${h.version}`, laneName);
              break;
            } else if (core.isLive(p)) {
              superseded.set(`${h.msgId}:${h.piece}:${P.version[p]}`, core.laneOf(p).name);
            }
            core.adoptEnvelope(p, lane, h, seq, r.offset, r.length);
            break;
          }
          case RT_DELTA: {
            const d = decodeDelta(r.body, false);
            const m = M.byId.get(d.msgId);
            if (m === undefined) break;
            const p = core.pieceOf(m, d.piece);
            if (p !== NO_SLOT && core.isLive(p) && P.version[p] === d.version) core.applyDelta(p, d.rcpt);
            break;
          }
          case RT_DONE: {
            const d = decodeDone(r.body);
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
      if (scan.tornAt !== undefined) {
        if (scan.tornAt < buf.length) {
          await fs.truncate(path, scan.tornAt);
          report.tornTails.push({
            segment: `${laneName}/${segmentName(seq)}`,
            offset: scan.tornAt,
            cut: buf.length - scan.tornAt,
          });
        }
      }
      if (scan.corruption) {
        corrupt.push({ lane: laneName, seq });
        report.corruptions.push({
          segment: `${laneName}/${segmentName(seq)}`,
          offset: scan.corruption.offset,
          reason: scan.corruption.reason,
          setAsideAs: '',
          salvaged: 0,
        });
      }
      if (scan.header === undefined && buf.length > 0 && !scan.corruption) {
        // A torn header: the file was created but its header never became durable.
        report.tornTails.push({ segment: `${laneName}/${segmentName(seq)}`, offset: 0, cut: buf.length });
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
    if (seqs.length > 0)
      writer.setTail(laneName, lastSeq, newestCorrupt || lastEnd < 0 ? Number.MAX_SAFE_INTEGER : lastEnd);
  }
  onProgress?.(total, total);

  // Messages: count live ones, drop dead pieces and orphans, account data.
  core.recovering = false;
  for (const [id, m] of [...M.byId]) {
    for (const p of core.piecesOf(m)) if (!core.isLive(p)) core.releaseDeadPiece(p);
    if (M.head[m] === NO_SLOT) {
      if (M.dataSeq[m] !== UNPLACED) report.orphanData++;
      M.dataSeq[m] = UNPLACED;
      M.release(m);
      continue;
    }
    if (M.dataSeq[m] === UNPLACED) {
      report.missingData.push(formatId(id));
      continue;
    }
    core.accountAdoptedData(m);
    report.liveMessages++;
    report.livePieces += core.piecesOf(m).length;
  }

  // Salvage the valid live records of corrupt segments, then set those segments aside.
  for (const c of corrupt) {
    const lane = core.lane(c.lane);
    const path = `${q.dir}/lanes/${c.lane}/${segmentName(c.seq)}`;
    let salvaged = 0;
    const buf = await fs.readFile(path);
    for (let p = 0; p < P.cap; p++) {
      if (!core.isLive(p) || P.lane[p] !== lane.idx || P.seq[p] !== c.seq) continue;
      const body = buf.subarray(P.off[p]! + FRAME_HEADER, P.off[p]! + P.len[p]!);
      const { decodeEnvelope } = await import('./record/records.js');
      core.putEnvelope(p, lane, decodeEnvelope(Buffer.from(body)));
      salvaged++;
    }
    for (const m of M.byId.values()) {
      if (M.dataLane[m] !== lane.idx || M.dataSeq[m] !== c.seq) continue;
      const data = Buffer.from(buf.subarray(M.dataOff[m]!, M.dataOff[m]! + M.dataLen[m]!));
      core.putData(
        m,
        lane.kind === 'data' || lane.kind === 'new' ? lane : core.dataLane(),
        [data],
        data.length,
      );
      salvaged++;
    }
    await writer.commit();
    await fs.mkdirp(`${q.dir}/quarantine`);
    const aside = `${q.dir}/quarantine/${c.lane}-${segmentName(c.seq)}`;
    await fs.rename(path, aside);
    await fs.syncDir(`${q.dir}/lanes/${c.lane}`);
    await fs.syncDir(`${q.dir}/quarantine`);
    lane.segs.delete(c.seq);
    const r = report.corruptions.find((x) => x.segment === `${c.lane}/${segmentName(c.seq)}`)!;
    r.setAsideAs = `quarantine/${c.lane}-${segmentName(c.seq)}`;
    r.salvaged = salvaged;
  }

  // Repair: an older version whose Done never became durable gets one now, in its own lane.
  for (const [key, laneName] of superseded) {
    const [msgId, piece, version] = key.split(':').map(Number) as [number, number, number];
    core.appendDone(laneName, msgId, piece, version, DONE_REPAIR, 1);
    report.repaired++;
  }
  if (report.repaired > 0) await writer.commit();

  core.markRecoveredGarbage();
  report.ms = performance.now() - t0;
  return report;
}
