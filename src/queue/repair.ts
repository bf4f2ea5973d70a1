// Recovery's repairs: what a crash in the middle of a multi-file batch, or corruption, leaves
// behind, turned back into a state the running queue can work from. Called by recovery.ts only,
// after the scan; every repair is appended and committed before recovery returns.
//
// - An incomplete move (an old version whose Done never became durable, with a newer version
//   present): the old version is the authority, because the batch that wrote the newer one may
//   be only partly durable (a split's other piece, the data copy). It is written again as a fresh
//   version (highest version + 1, recipients with a durable Delta left out); the newer versions
//   get a Done in phase 1 and the old one its Done in phase 2, so any crash during the repair
//   leaves a state this same rule repairs again (docs/queue-states.md, S7-S9).
// - A corrupt segment: its valid records before the corruption are salvaged to the lane's tail
//   (live envelopes as fresh versions without their delivered recipients, live data, and the
//   Done/Delta records that end or advance envelopes stored elsewhere), then it is set aside.
// Invariant: nothing here lets a recipient that is pending on disk disappear; at worst a
// recipient whose outcome was not durable is tried again.
import type { Extent, QueueCore } from './core.js';
import type { QueueFs } from './log/fs.js';
import { scanSegment } from './log/reader.js';
import { segmentName } from './log/segment.js';
import type { GroupWriter } from './log/writer.js';
import { FRAME_HEADER } from './record/frame.js';
import {
  decodeDelta,
  decodeEnvelope,
  DONE_REPAIR,
  type EnvelopeRecord,
  RT_DELTA,
  RT_DONE,
} from './record/records.js';
import { NO_SLOT, UNPLACED } from './state/tables.js';

/** Where an older version of a piece was seen, and the recipients it had finished. */
export interface OldVersion {
  lane: string;
  seq: number;
  off: number;
  len: number;
  deltas: number[];
}

export interface RepairContext {
  dir: string;
  fs: QueueFs;
  core: QueueCore;
  writer: GroupWriter;
  now: number;
}

function withoutDone(env: EnvelopeRecord, done: Iterable<number>, version: number, ev: string, now: number) {
  const skip = new Set(done);
  const recipients = env.info.recipients.filter((_, i) => !skip.has(i));
  const rec: EnvelopeRecord = {
    ...env,
    version,
    rcptCount: recipients.length,
    info: { ...env.info, recipients, history: [...env.info.history, { t: now, ev }].slice(-20) },
  };
  return rec;
}

/**
 * Restores the old version of every piece whose move did not complete. `superseded` maps
 * "msgId:piece:version" to versions seen without their Done. Returns how many pieces it restored.
 */
export async function reviveIncompleteMoves(
  ctx: RepairContext,
  superseded: Map<string, OldVersion>,
): Promise<number> {
  const { core, fs } = ctx;
  const P = core.pieces;
  const byPiece = new Map<string, Array<{ version: number; old: OldVersion }>>();
  for (const [key, old] of superseded) {
    const [id, piece, version] = key.split(':').map(Number) as [number, number, number];
    const k = `${id}:${piece}`;
    let list = byPiece.get(k);
    if (!list) byPiece.set(k, (list = []));
    list.push({ version, old });
  }
  let revived = 0;
  for (const [k, list] of byPiece) {
    const [msgId, piece] = k.split(':').map(Number) as [number, number];
    const m = core.msgs.byId.get(msgId);
    if (m === undefined) continue;
    const p = core.pieceOf(m, piece);
    if (p === NO_SLOT) continue;
    list.sort((a, b) => a.version - b.version);
    const keep = list[0]!;
    const top = P.version[p]!;
    const body = await fs.read(
      `${ctx.dir}/lanes/${keep.old.lane}/${segmentName(keep.old.seq)}`,
      keep.old.off + FRAME_HEADER,
      keep.old.len - FRAME_HEADER,
    );
    const env = decodeEnvelope(body);
    // Recipients the incomplete move already put in another piece (durable, since we see it)
    // stay there only: restoring them here too would deliver them twice.
    const elsewhere = new Set<string>();
    for (const o of core.piecesOf(m)) {
      // (A sibling restored a moment ago is not placed yet: skipping it can only duplicate.)
      if (o === p || !core.isLive(o) || P.seq[o] === UNPLACED) continue;
      const other = decodeEnvelope(
        await fs.read(
          `${ctx.dir}/lanes/${core.laneOf(o).name}/${segmentName(P.seq[o]!)}`,
          P.off[o]! + FRAME_HEADER,
          P.len[o]! - FRAME_HEADER,
        ),
      );
      const done = core.deltas.get(o);
      other.info.recipients.forEach((r, i) => {
        if (!done?.has(i)) elsewhere.add(r.address);
      });
    }
    const skip = new Set(keep.old.deltas);
    env.info.recipients.forEach((r, i) => {
      if (elsewhere.has(r.address)) skip.add(i);
    });
    // Phase 1: the restored copy, and a Done for every newer version without one.
    if (core.isLive(p)) core.appendDone(core.laneOf(p).name, msgId, piece, top, DONE_REPAIR, 1);
    for (const o of list.slice(1)) core.appendDone(o.old.lane, msgId, piece, o.version, DONE_REPAIR, 1);
    const rec = withoutDone(env, skip, top + 1, 'restored after an incomplete move', ctx.now);
    if (rec.rcptCount > 0) {
      core.putEnvelope(p, core.lane(keep.old.lane), rec);
      revived++;
    } else if (core.isLive(p)) {
      core.killPiece(p, DONE_REPAIR, 1, false);
    }
    // Phase 2: the old version ends only once all of the above is durable.
    core.appendDone(keep.old.lane, msgId, piece, keep.version, DONE_REPAIR, 2);
  }
  return revived;
}

/**
 * Copies what is still valid and needed out of a corrupt segment to the tail of its lane.
 * Returns the number of records salvaged. The caller commits and then sets the segment aside.
 */
export async function salvageSegment(
  ctx: RepairContext,
  laneName: string,
  seq: number,
  corruptAt: number,
): Promise<number> {
  const { core, fs, writer } = ctx;
  const P = core.pieces;
  const M = core.msgs;
  const lane = core.lane(laneName);
  const buf = await fs.readFile(`${ctx.dir}/lanes/${laneName}/${segmentName(seq)}`);
  let salvaged = 0;
  // Kills and outcomes for envelopes in other segments: without them, those would come back.
  scanSegment(buf.subarray(0, corruptAt), false, (r) => {
    if (r.type === RT_DONE) {
      writer.append(laneName, RT_DONE, [Buffer.from(r.body)]);
      salvaged++;
    } else if (r.type === RT_DELTA) {
      const d = decodeDelta(r.body, false);
      const m = M.byId.get(d.msgId);
      const p = m === undefined ? NO_SLOT : core.pieceOf(m, d.piece);
      if (p === NO_SLOT || !core.isLive(p) || P.version[p] !== d.version) return;
      if (P.lane[p] === lane.idx && P.seq[p] === seq) return; // rewritten below without that recipient
      writer.append(laneName, RT_DELTA, [Buffer.from(r.body)]);
      salvaged++;
    }
  });
  // Live envelopes: a fresh version with only the recipients still pending.
  for (let p = 0; p < P.cap; p++) {
    if (!core.isLive(p) || P.lane[p] !== lane.idx || P.seq[p] !== seq) continue;
    const env = decodeEnvelope(Buffer.from(buf.subarray(P.off[p]! + FRAME_HEADER, P.off[p]! + P.len[p]!)));
    const done = core.deltas.get(p)?.keys() ?? [];
    const rec = withoutDone(env, done, P.version[p]! + 1, 'salvaged from a corrupt segment', ctx.now);
    if (rec.rcptCount > 0) core.putEnvelope(p, lane, rec);
    else core.killPiece(p, DONE_REPAIR, 1);
    salvaged++;
  }
  // Live chunked data with a chunk here (all before the damage, or it would not be complete):
  // copied whole to the data lane as chunks, the chunks here read from the buffer in hand.
  for (const [id, m] of M.byId) {
    const c = core.chunked.get(m);
    if (!c || c.lane !== lane || !c.extents.some((e) => e.seq === seq)) continue;
    const dataLane = core.dataLane();
    const copy: Extent[] = [];
    let offset = 0;
    for (const [i, e] of c.extents.entries()) {
      const bytes =
        e.seq === seq
          ? Buffer.from(buf.subarray(e.off, e.off + e.len))
          : await fs.read(`${ctx.dir}/lanes/${laneName}/${segmentName(e.seq)}`, e.off, e.len);
      const last = i === c.extents.length - 1;
      core.appendChunk(dataLane, id, offset, last, [bytes], bytes.length, (x) => {
        copy.push(x);
        if (last) core.setChunked(m, id, dataLane, copy);
      });
      offset += bytes.length;
    }
    salvaged++;
  }
  // Live data: to the data lane unless every piece of the message is in `new`.
  for (const m of M.byId.values()) {
    if (M.dataLane[m] !== lane.idx || M.dataSeq[m] !== seq || core.chunked.has(m)) continue;
    const data = Buffer.from(buf.subarray(M.dataOff[m]!, M.dataOff[m]! + M.dataLen[m]!));
    const allNew = core.piecesOf(m).every((p) => core.laneOf(p).kind === 'new');
    core.putData(m, allNew ? core.newLane() : core.dataLane(), [data], data.length);
    salvaged++;
  }
  return salvaged;
}

/** Moves a corrupt segment to quarantine/ under a name not used yet; returns that name. */
export async function setAside(ctx: RepairContext, laneName: string, seq: number): Promise<string> {
  const { fs } = ctx;
  await fs.mkdirp(`${ctx.dir}/quarantine`);
  const taken = new Set(await fs.readdir(`${ctx.dir}/quarantine`));
  let name = `${laneName}-${segmentName(seq)}`;
  for (let i = 1; taken.has(name); i++) name = `${laneName}-${segmentName(seq)}.${i}`;
  await fs.rename(`${ctx.dir}/lanes/${laneName}/${segmentName(seq)}`, `${ctx.dir}/quarantine/${name}`);
  // The quarantine entry first: a crash in between may leave the file in both places, never in neither.
  await fs.syncDir(`${ctx.dir}/quarantine`);
  await fs.syncDir(ctx.dir);
  await fs.syncDir(`${ctx.dir}/lanes/${laneName}`);
  return `quarantine/${name}`;
}
