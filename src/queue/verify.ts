// The read-only check of a queue directory behind `logmta log verify` (cli/log-verify.ts only
// formats its answer). It runs the scan recovery runs (log/reader.ts scanSegment, the record
// decoders) under recovery's own rules, taken from log/lane-scan.ts as recovery and core.ts take
// them: which segments count as the newest, where a segment is cut, what is a gap, which copy of
// a message's data is kept and how chunks make a copy. It does not use Queue.open, which writes
// (it cuts torn tails, sets corrupt segments aside, appends repairs). It reports per lane:
// segments, bytes, records by type, live envelopes and messages, garbage, torn tails,
// corruption (segment + byte offset + reason) and missing segments.
//
// Invariant: nothing under DIR is ever opened for writing. "Live" means what recovery would
// keep: the highest version of each msgId:piece that no Done ends; a live message is one with a
// live piece. Live bytes are those live envelopes, the deltas of their versions, the one data
// copy recovery would use and the headers of segments holding any of them; everything else,
// Done records included, counts as garbage. Chunk records count as data.
// Fails: NotAQueueError when DIR is no queue directory; a read error as it comes.
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { chunkStep, keepsCopy, laneSegments, missingSegments, segmentCut } from './log/lane-scan.js';
import { scanSegment } from './log/reader.js';
import { parseLaneName, parseSegmentName, segmentName } from './log/segment.js';
import { FRAME_HEADER } from './record/frame.js';
import {
  CHUNK_PREFIX,
  decodeChunkHead,
  decodeDataId,
  decodeDelta,
  decodeDone,
  decodeEnvelope,
  formatId,
  knownFormat,
  RT_CHUNK,
  RT_DATA,
  RT_DELTA,
  RT_DONE,
  RT_ENVELOPE,
} from './record/records.js';

export interface SegmentProblem {
  segment: string;
  offset: number;
  reason: string;
}

export interface LaneReport {
  name: string;
  kind: string;
  segments: number;
  bytes: number;
  records: { data: number; envelope: number; delta: number; done: number };
  liveEnvelopes: number;
  liveMessages: number;
  liveBytes: number;
  /** (bytes − live bytes) / bytes; 0 for an empty lane. */
  garbageRatio: number;
  /** Torn tails: `bytes` past `offset` would be cut by the next start. */
  tornTails: Array<{ segment: string; offset: number; bytes: number }>;
  corruptions: SegmentProblem[];
  missingSegments: string[];
}

export type VerifyStatus = 'clean' | 'torn' | 'corrupt';

export interface VerifyReport {
  dir: string;
  lanes: LaneReport[];
  segments: number;
  bytes: number;
  liveEnvelopes: number;
  liveMessages: number;
  liveBytes: number;
  garbageRatio: number;
  /**
   * Messages with a live envelope but no data record anywhere: recovery ends them (an accept
   * whose data never became durable after a crash, or data lost with a missing segment).
   */
  missingData: string[];
  /**
   * "ID:piece" of older versions without their Done: moves a crash cut short, which recovery
   * undoes (the old version becomes current again).
   */
  incompleteMoves: string[];
  /** Segments an earlier recovery set aside under quarantine/. */
  quarantined: string[];
  status: VerifyStatus;
}

export class NotAQueueError extends Error {}

/** Where a record is: lane index, segment index (into the scan's segment list), frame length. */
interface Loc {
  lane: number;
  seg: number;
  len: number;
}

/** What the scan saw of one message. Pieces and versions are packed as piece * 2^32 + version. */
interface MsgSeen {
  /** The highest version seen of each piece. */
  pieces: Array<Loc & { piece: number; version: number }>;
  /** Lower versions seen (superseded): each needs its Done, or the move was incomplete. */
  older: Array<Loc & { piece: number; version: number }> | undefined;
  dones: number[] | undefined;
  deltas: Array<Loc & { pv: number }> | undefined;
  data: DataSeen | undefined;
  /** A copy written in chunks, not yet ended by its last chunk. */
  partial: (DataSeen & { next: number }) | undefined;
}

/** One copy of a message's data: its records (one, or its chunks in order). */
interface DataSeen {
  lane: number;
  dataLane: boolean;
  locs: Loc[];
}

const pv = (piece: number, version: number) => piece * 4294967296 + version;

function ratio(bytes: number, live: number): number {
  return bytes === 0 ? 0 : (bytes - live) / bytes;
}

async function listDir(path: string): Promise<string[]> {
  try {
    return await fsp.readdir(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

/** Scans the queue directory `dir` without writing to it. */
export async function verifyQueue(dir: string): Promise<VerifyReport> {
  const st = await fsp.stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new NotAQueueError(`${dir}: no such directory`);
  const lanesDir = join(dir, 'lanes');
  if (!(await fsp.stat(lanesDir).catch(() => undefined))?.isDirectory())
    throw new NotAQueueError(`${dir}: not a queue directory (no lanes/)`);
  const quarantined = (await listDir(join(dir, 'quarantine'))).filter((n) => n.endsWith('.seg')).sort();
  const laneNames = (await fsp.readdir(lanesDir)).filter((n) => parseLaneName(n) !== undefined).sort();
  const lanes: LaneReport[] = [];
  // Keyed by message id (numbers, not strings: a million messages must stay cheap to index).
  const msgs = new Map<number, MsgSeen>();
  const seen = (id: number): MsgSeen => {
    let m = msgs.get(id);
    if (!m)
      msgs.set(
        id,
        (m = {
          pieces: [],
          older: undefined,
          dones: undefined,
          deltas: undefined,
          data: undefined,
          partial: undefined,
        }),
      );
    return m;
  };
  const segs: Array<{ lane: number; headerLen: number }> = [];
  for (const name of laneNames) {
    const li = lanes.length;
    const kind = parseLaneName(name)!.kind;
    const lane: LaneReport = {
      name,
      kind,
      segments: 0,
      bytes: 0,
      records: { data: 0, envelope: 0, delta: 0, done: 0 },
      liveEnvelopes: 0,
      liveMessages: 0,
      liveBytes: 0,
      garbageRatio: 0,
      tornTails: [],
      corruptions: [],
      missingSegments: [],
    };
    lanes.push(lane);
    const seqs = (await listDir(join(lanesDir, name)))
      .map(parseSegmentName)
      .filter((s): s is number => s !== undefined)
      .sort((a, b) => a - b);
    // Recovery's own rules (queue/log/lane-scan.ts): gaps, which segments count as the newest,
    // and where each segment is cut.
    lane.missingSegments.push(...missingSegments(name, seqs, quarantined));
    const pathOf = (seq: number) => join(lanesDir, name, segmentName(seq));
    for await (const { seq, buf, newest } of laneSegments(seqs, (seq) => fsp.readFile(pathOf(seq)))) {
      const seg = `${name}/${segmentName(seq)}`;
      lane.segments++;
      lane.bytes += buf.length;
      const si = segs.length;
      segs.push({ lane: li, headerLen: 0 });
      const bad = (offset: number, reason: string) => lane.corruptions.push({ segment: seg, offset, reason });
      const scan = scanSegment(buf, newest, (r) => {
        try {
          switch (r.type) {
            case RT_DATA: {
              lane.records.data++;
              const m = seen(decodeDataId(r.body));
              const inData = kind === 'data';
              if (keepsCopy(m.data?.lane, m.data?.dataLane === true, li, inData))
                m.data = { lane: li, dataLane: inData, locs: [{ lane: li, seg: si, len: r.length }] };
              break;
            }
            case RT_CHUNK: {
              lane.records.data++;
              const c = decodeChunkHead(r.body);
              const m = seen(c.msgId);
              const inData = kind === 'data';
              // The last chunk completes a copy.
              const step = chunkStep(m.partial?.lane, m.partial?.next ?? 0, li, c.offset);
              if (step === 'remnant') break;
              if (step === 'start') m.partial = { lane: li, dataLane: inData, locs: [], next: 0 };
              const p = m.partial!;
              p.locs.push({ lane: li, seg: si, len: r.length });
              p.next += r.body.length - CHUNK_PREFIX;
              if (!c.last) break;
              m.partial = undefined;
              if (keepsCopy(m.data?.lane, m.data?.dataLane === true, li, inData))
                m.data = { lane: li, dataLane: inData, locs: p.locs };
              break;
            }
            case RT_ENVELOPE: {
              lane.records.envelope++;
              const e = decodeEnvelope(r.body); // the whole record, JSON included: verify reads everything
              const m = seen(e.msgId);
              const cur = m.pieces.find((p) => p.piece === e.piece);
              const at = { lane: li, seg: si, len: r.length, piece: e.piece, version: e.version };
              if (!cur) m.pieces.push(at);
              else if (cur.version < e.version) {
                m.pieces[m.pieces.indexOf(cur)] = at;
                (m.older ??= []).push(cur);
              } else if (cur.version > e.version) (m.older ??= []).push(at);
              break;
            }
            case RT_DELTA: {
              lane.records.delta++;
              const d = decodeDelta(r.body);
              const m = seen(d.msgId);
              (m.deltas ??= []).push({ lane: li, seg: si, len: r.length, pv: pv(d.piece, d.version) });
              break;
            }
            case RT_DONE: {
              lane.records.done++;
              const d = decodeDone(r.body);
              (seen(d.msgId).dones ??= []).push(pv(d.piece, d.version));
              break;
            }
          }
        } catch (e) {
          bad(
            r.offset,
            `undecodable record of type ${r.type}: ${e instanceof Error ? e.message : String(e)}`,
          );
        }
      });
      if (scan.header) {
        segs[si]!.headerLen = FRAME_HEADER + buf.readUInt32LE(0);
        if (scan.header.lane !== name || scan.header.seq !== seq)
          bad(0, `header names ${scan.header.lane}/${segmentName(scan.header.seq)}`);
        if (!knownFormat(scan.header.format)) bad(0, `unknown format ${scan.header.format}`);
      }
      if (scan.corruption) bad(scan.corruption.offset, scan.corruption.reason);
      // A torn header (offset 0) is a torn tail too: the file was created, its header never synced.
      const cut = segmentCut(scan, buf.length, newest);
      if (cut?.torn) lane.tornTails.push({ segment: seg, offset: cut.at, bytes: buf.length - cut.at });
    }
  }

  // What recovery would keep.
  const liveSegs = new Uint8Array(segs.length);
  const live = (l: Loc) => {
    lanes[l.lane]!.liveBytes += l.len;
    liveSegs[l.seg] = 1;
  };
  const laneMsgs = lanes.map(() => 0);
  let liveEnvelopes = 0;
  let liveMessages = 0;
  const missingData: string[] = [];
  const incompleteMoves: string[] = [];
  for (const [id, m] of msgs) {
    const livePieces = m.pieces.filter((p) => !m.dones?.includes(pv(p.piece, p.version)));
    // An older version without its Done: a move whose batch a crash cut short. Recovery makes
    // the old version current again (repair.ts), so it is live in place of the newer one.
    const revived = (m.older ?? []).filter((o) => !m.dones?.includes(pv(o.piece, o.version)));
    for (const o of revived) incompleteMoves.push(`${formatId(id)}:${o.piece}`);
    if (livePieces.length === 0 && revived.length === 0) continue;
    if (!m.data) {
      // Recovery ends such pieces: an accept whose data never became durable, or lost data.
      missingData.push(formatId(id));
      continue;
    }
    liveMessages++;
    for (const l of m.data.locs) live(l);
    const inLanes: number[] = [];
    for (const p of [...livePieces, ...revived]) {
      const code = pv(p.piece, p.version);
      live(p);
      for (const d of m.deltas ?? []) if (d.pv === code) live(d);
      if (revived.some((o) => o.piece === p.piece) && !revived.includes(p)) continue; // superseded by the revival
      liveEnvelopes++;
      lanes[p.lane]!.liveEnvelopes++;
      if (!inLanes.includes(p.lane)) inLanes.push(p.lane);
    }
    for (const l of inLanes) laneMsgs[l]!++;
  }
  segs.forEach((s, i) => {
    if (liveSegs[i]) lanes[s.lane]!.liveBytes += s.headerLen;
  });
  lanes.forEach((l, i) => {
    l.liveMessages = laneMsgs[i]!;
    l.garbageRatio = ratio(l.bytes, l.liveBytes);
  });
  const sum = (f: (l: LaneReport) => number) => lanes.reduce((a, l) => a + f(l), 0);
  const bytes = sum((l) => l.bytes);
  const liveBytes = sum((l) => l.liveBytes);
  const corrupt = lanes.some((l) => l.corruptions.length + l.missingSegments.length > 0);
  const torn = lanes.some((l) => l.tornTails.length > 0) || missingData.length + incompleteMoves.length > 0;
  return {
    dir,
    lanes,
    segments: sum((l) => l.segments),
    bytes,
    liveEnvelopes,
    liveMessages,
    liveBytes,
    garbageRatio: ratio(bytes, liveBytes),
    missingData,
    incompleteMoves,
    quarantined,
    status: corrupt ? 'corrupt' : torn ? 'torn' : 'clean',
  };
}
