// Accepting a message: its data (given whole, or a spool it was streamed into as it arrived) and
// one envelope per first lane are appended, and accept() resolves only once the batch holding
// them is durable (DESIGN.md rule 1) — the caller may then reply 250. A just-accepted message is
// kept in memory for its first attempt (fresh.ts) and its `new` lane is pumped at once.
// Invariant: nothing of a message is handed to delivery before its envelope is durable (the
// runner checks the batch); a refused accept leaves no live envelope (the spool is aborted).
// Fails: QUEUE_FULL / QUEUE_POISONED from the writer, acceptRefusal while the disk is full,
// NO_RECIPIENTS, DUPLICATE_ID, WRONG_QUEUE / WRONG_ID / SPOOL_CLOSED for a misused spool.
import { MtaError } from '../errors.js';
import type { QueueContext } from './context.js';
import { DataSpool } from './data/spool.js';
import { FRESH_MAX } from './fresh.js';
import type { LaneState } from './lanes/lane.js';
import { segmentName } from './log/segment.js';
import { type EnvelopeInfo, type EnvelopeRecord, formatId } from './record/records.js';
import type { AcceptInput, AcceptResult } from './types.js';

export class Acceptor {
  constructor(
    private readonly cx: QueueContext,
    /** Runs a lane (lanes/runner.ts): the `new` lane once a message is durable. */
    private readonly pump: (lane: LaneState) => void,
  ) {}

  /**
   * A spool for the data of a message being received (streamed to the log in chunks once it is
   * large); pass it as `data` to accept() on this queue, or abort() it.
   */
  spool(msgId: number): DataSpool {
    this.cx.ids.observe(msgId);
    return new DataSpool(
      {
        core: this.cx.core,
        writer: this.cx.writer,
        budget: this.cx.budget,
        readSegment: (lane, seq, off, len) =>
          this.cx.fs.read(`${this.cx.dir}/lanes/${lane}/${segmentName(seq)}`, off, len),
      },
      msgId,
      this.cx.chunkSize,
    );
  }

  /** Accepts a message; resolves once it is durable (the caller may then reply 250). */
  async accept(input: AcceptInput): Promise<AcceptResult> {
    const spool = input.data instanceof DataSpool ? input.data : undefined;
    let fresh: { msgId: number; size: number; toNew: boolean; uncount: number };
    try {
      if (this.cx.acceptRefusal) throw this.cx.acceptRefusal;
      if (spool) {
        if (!spool.writesTo(this.cx.core))
          throw new MtaError('WRONG_QUEUE', 'transient', 'a spool is accepted by the queue that made it');
        if (input.msgId !== undefined && input.msgId !== spool.msgId)
          throw new MtaError('WRONG_ID', 'transient', 'a spool is accepted under its own message id');
        await spool.finishWriting();
        if (spool.failed) throw spool.failed;
        if (spool.state !== 'open')
          throw new MtaError('SPOOL_CLOSED', 'transient', 'the message data was discarded');
      }
      fresh = this.append(spool ? { ...input, msgId: spool.msgId } : input);
    } catch (e) {
      spool?.abort();
      throw e;
    }
    try {
      await this.cx.writer.commit();
    } catch (e) {
      this.cx.fresh.drop(fresh.msgId);
      throw e;
    } finally {
      this.cx.budget.sub(fresh.uncount);
    }
    const id = formatId(fresh.msgId);
    this.cx.emit({ type: 'accepted', id, size: fresh.size, recipients: input.recipients.length });
    if (fresh.toNew) this.pump(this.cx.core.newLane());
    return { id, msgId: fresh.msgId };
  }

  /**
   * Appends a message's records without waiting (the caller commits). Returns, in `uncount`,
   * budget bytes (a spool's last buffered bytes) to release once the commit is over.
   */
  append(input: AcceptInput): {
    msgId: number;
    size: number;
    toNew: boolean;
    uncount: number;
  } {
    if (this.cx.writer.poisoned) throw this.cx.writer.poisoned;
    if (input.recipients.length === 0)
      throw new MtaError('NO_RECIPIENTS', 'permanent', 'a message needs at least one recipient');
    const core = this.cx.core;
    const now = this.cx.clock.now();
    const msgId = input.msgId ?? this.cx.ids.next();
    // An id from our own IdSource is above every id seen, so only a given one can clash.
    if (input.msgId !== undefined) {
      this.cx.ids.observe(msgId);
      if (core.msgs.byId.has(msgId))
        throw new MtaError('DUPLICATE_ID', 'transient', `message id ${formatId(msgId)} already queued`);
    }
    const arrival = input.arrival ?? now;
    // The data: given whole, or a spool's — whose last bytes are either the whole message (it was
    // never chunked) or its last chunk. Nothing below throws, so the spool is never left half taken.
    const spool = input.data instanceof DataSpool ? input.data : undefined;
    const taken = spool?.take();
    const chunks: readonly Buffer[] = taken ? taken.views : (input.data as readonly Buffer[]);
    let size = taken ? taken.offset + taken.bytes : 0;
    if (!taken) for (const b of chunks) size += b.length;
    let uncount = taken?.bytes ?? 0;
    // Recipients grouped by first lane; the common case (everything to `new`) builds no map.
    const groups = new Map<LaneState, number[] | null>();
    const dests = input.destinations;
    if (!dests || dests.every((d) => d.kind === 'new')) groups.set(core.newLane(), null);
    else {
      for (let i = 0; i < input.recipients.length; i++) {
        const d = dests[i] ?? { kind: 'new' as const };
        const lane =
          d.kind === 'held'
            ? core.heldLane(d.domain)
            : d.kind === 'hold'
              ? core.lane('hold')
              : core.newLane();
        let g = groups.get(lane);
        if (!g) groups.set(lane, (g = []));
        g.push(i);
      }
    }
    const onlyNew = groups.size === 1 && groups.has(core.newLane());
    const mslot = core.newMessage(msgId, arrival);
    if (spool?.chunked) {
      // The last chunk completes the data: from its placement on the message owns every chunk.
      const extents = spool.extents;
      const lane = core.dataLane();
      core.appendChunk(lane, msgId, taken!.offset, true, chunks, taken!.bytes, (e) => {
        extents.push(e);
        core.setChunked(mslot, msgId, lane, extents);
      });
    } else core.putData(mslot, onlyNew ? core.newLane() : core.dataLane(), chunks, size);
    const base: EnvelopeInfo = {
      sender: input.sender,
      recipients: input.recipients,
      size,
      attempts: 0,
      history: [{ t: now, ev: 'received' }],
    };
    if (input.ret) base.ret = input.ret;
    if (input.envid !== undefined) base.envid = input.envid;
    if (input.smtputf8) base.smtputf8 = true;
    if (input.body) base.body = input.body;
    if (input.client) base.client = input.client;
    if (input.report) base.report = true;
    let pieceNo = 0;
    let toNew = false;
    for (const [lane, idxs] of groups) {
      const pslot = core.addPiece(mslot, pieceNo);
      const rec: EnvelopeRecord = {
        msgId,
        piece: pieceNo,
        version: 1,
        due: arrival,
        arrival,
        rcptCount: idxs ? idxs.length : input.recipients.length,
        info: idxs ? { ...base, recipients: idxs.map((i) => input.recipients[i]!) } : base,
      };
      core.putEnvelope(pslot, lane, rec);
      if (lane.kind === 'new') {
        if (this.cx.fresh.env.size < FRESH_MAX)
          this.cx.fresh.env.set(pslot, { gen: core.pieces.gen[pslot]!, rec });
        toNew = true;
      }
      pieceNo++;
    }
    if (toNew && !spool?.chunked && this.cx.fresh.data.size < FRESH_MAX) {
      // Kept for the first attempt only while that leaves half the budget to arriving mail.
      if (taken ? this.cx.budget.used <= this.cx.budget.limit / 2 : this.cx.budget.roomForCache(size)) {
        if (!taken) this.cx.budget.add(size);
        this.cx.fresh.data.set(msgId, { chunks, size });
        uncount = 0;
      }
    }
    return { msgId, size, toNew, uncount };
  }
}
