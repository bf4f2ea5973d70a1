// What inspection asks of every live piece without reading its envelope: the domains of its
// recipients and its sender, interned (one number per piece in the piece table, plus a small
// array for pieces with several recipients). Set whenever the queue writes an envelope (it has
// the record in hand); unknown for envelopes found by recovery until Queue.indexFacets reads
// them once. So `queue summary` is a pass over the index, and `queue list` with filters reads
// only the envelopes that match.
// Invariant: a piece's facets describe its current version (PieceTable.dom/sender are reset on
// every version change, set again from that version's record). Domains are compared as inspect
// shows them: lower case, no trailing dot; senders lower case ('' = the null sender).
// Costs: 8 bytes per piece row, one Int32Array per multi-recipient piece, one string per
// distinct domain or sender.
import type { EnvelopeRecord } from '../record/records.js';
import { FACET_MULTI, FACET_UNKNOWN, type PieceTable } from './tables.js';
import { domainOf } from '../../util/domain.js';

/** Strings to small integers and back. */
export class Interner {
  private readonly ids = new Map<string, number>();
  readonly names: string[] = [];

  id(s: string): number {
    let i = this.ids.get(s);
    if (i === undefined) {
      i = this.names.length;
      this.names.push(s);
      this.ids.set(s, i);
    }
    return i;
  }

  /** The id of `s` if it was ever interned. */
  find(s: string): number | undefined {
    return this.ids.get(s);
  }
}

export class Facets {
  readonly domains = new Interner();
  readonly senders = new Interner();
  /** Per recipient index, for pieces with FACET_MULTI. */
  readonly multi = new Map<number, Int32Array>();

  constructor(private readonly pieces: PieceTable) {}

  /** Records the facets of the version `rec` that piece `pslot` now has. */
  set(pslot: number, rec: EnvelopeRecord): void {
    const P = this.pieces;
    const r = rec.info.recipients;
    P.sender[pslot] = this.senders.id(rec.info.sender.toLowerCase());
    if (r.length === 1) {
      P.dom[pslot] = this.domains.id(domainOf(r[0]!.address));
      this.multi.delete(pslot);
      return;
    }
    const ids = new Int32Array(r.length);
    for (let i = 0; i < r.length; i++) ids[i] = this.domains.id(domainOf(r[i]!.address));
    P.dom[pslot] = FACET_MULTI;
    this.multi.set(pslot, ids);
  }

  /** The piece's current version is not known yet (recovery). */
  forget(pslot: number): void {
    this.pieces.dom[pslot] = FACET_UNKNOWN;
    this.pieces.sender[pslot] = FACET_UNKNOWN;
    this.multi.delete(pslot);
  }

  known(pslot: number): boolean {
    return this.pieces.dom[pslot] !== FACET_UNKNOWN;
  }

  /** Domain id of recipient `i` of the piece (its facets must be known). */
  domainOf(pslot: number, i: number): number {
    const d = this.pieces.dom[pslot]!;
    return d === FACET_MULTI ? this.multi.get(pslot)![i]! : d;
  }

  /** Number of recipients the facets describe (its current version's). */
  recipientCount(pslot: number): number {
    const d = this.pieces.dom[pslot]!;
    return d === FACET_MULTI ? this.multi.get(pslot)!.length : d === FACET_UNKNOWN ? 0 : 1;
  }
}
