// Deliveries in flight handed from a queue that is being replaced to its successor on the same
// directory (a full disk: queues.ts cuts the refused batch and reopens the directory). The old
// queue can write nothing any more, and the reopened one recovers the messages it was
// delivering as pending. Without a handover the successor attempted them again at once, while
// the first delivery was still on the wire, and that delivery's outcome was refused: a
// duplicate for every message in flight.
// How: when the old queue halts, handOff() lists what it has in flight (runner jobs and ATRN
// claims: message, piece, version, and a promise that settles when the job has ended) and from
// then on sends every outcome its jobs report here instead of to its own writer. The successor
// adopts the list before it starts: each piece it still has at that version is marked in flight
// until the old job ends, so no runner, flush or ATRN session takes it meanwhile, and the
// forwarded outcomes are recorded by the successor as if its own job had reported them.
// Invariant: an outcome reported before attach() waits for it; after fail() (the successor never
// came: stopping, or the reopen failed) it rejects, as any outcome of a queue that cannot write
// does, and the next start attempts the piece again (a duplicate, as after a crash).
import type { EnvelopeRecord } from '../record/records.js';
import type { RcptOutcome } from '../types.js';

/** One job of the old queue still running: what it delivers, and when it has ended. */
export interface InFlight {
  msgId: number;
  piece: number;
  version: number;
  /** An ATRN claim (held lane) rather than a runner job. */
  claim: boolean;
  settled: Promise<void>;
}

/** The successor's side: records an outcome of an adopted piece (adoption.ts). */
export interface Successor {
  forwarded(env: EnvelopeRecord, outcomes: RcptOutcome[], final: boolean): Promise<void>;
}

export class Handover {
  private successor: Successor | undefined;
  private failure: Error | undefined;
  private waiters: Array<{ resolve: (s: Successor) => void; reject: (e: Error) => void }> = [];

  constructor(readonly inflight: readonly InFlight[]) {}

  /** An outcome of a job of the old queue (job.record: final = false; job.finish: true). */
  async forward(env: EnvelopeRecord, outcomes: RcptOutcome[], final: boolean): Promise<void> {
    const s = await this.target();
    await s.forwarded(env, outcomes, final);
  }

  /** The successor has adopted the list: outcomes go to it from now on. */
  attach(s: Successor): void {
    this.successor = s;
    for (const w of this.waiters) w.resolve(s);
    this.waiters = [];
  }

  /** No successor will come: every outcome waiting or still to come is refused with `e`. */
  fail(e: Error): void {
    if (this.successor) return;
    this.failure = e;
    for (const w of this.waiters) w.reject(e);
    this.waiters = [];
  }

  private target(): Promise<Successor> {
    if (this.successor) return Promise.resolve(this.successor);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}
