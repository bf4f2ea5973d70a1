// A message as milters see and edit it: its header fields and its body, and the header/body
// edits of SMFIR_ADDHEADER, INSHEADER, CHGHEADER and REPLBODY applied the way Postfix applies
// them (cleanup_milter.c), so filters written for Postfix behave the same here:
// - our own Received: field is never shown to a filter; CHGHEADER indexes ("the n-th field of
//   this name", 0 taken as 1) count only the fields a filter was shown, while INSHEADER indexes
//   count every field, ours included (0 = above everything, 1 = just below our Received:);
// - a CHGHEADER with an empty value deletes the field, and one for a field that does not exist
//   appends it;
// - field values go to filters without the one space after the colon (unless the filter asked
//   for SMFIP_HDR_LEADSPC) and with folded lines joined by LF, as Sendmail sends them; values
//   coming back have their line ends made CRLF;
// - a replaced body is taken as lines (LF or CRLF) and written back with CRLF line ends.
// Byte strings ('latin1') keep 8-bit header bytes exact. Pure; never throws.

export interface HeaderField {
  /** The field name as written (before the colon, trailing blanks removed). */
  name: string;
  /** The whole field as it is on the wire, CRLF line ends included (byte string). */
  raw: string;
  /** Our own Received: field: kept in place as its original Buffer, never shown to filters. */
  ours?: Buffer;
}

export interface SplitMessage {
  fields: HeaderField[];
  /** Whether an empty line separates header and body. */
  separator: boolean;
  body: Buffer[];
}

const FIELD_NAME = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/;

/** Splits message data into header fields and body; `ours` is our Received: chunk in `data`. */
export function splitMessage(data: readonly Buffer[], ours?: Buffer): SplitMessage {
  let oursAt = -1;
  let offset = 0;
  for (const c of data) {
    if (c === ours) {
      oursAt = offset;
      break;
    }
    offset += c.length;
  }
  const all = data.length === 1 ? (data[0] as Buffer) : Buffer.concat(data as Buffer[]);
  const fields: HeaderField[] = [];
  let pos = 0;
  let separator = false;
  while (pos < all.length) {
    const eol = lineEnd(all, pos);
    if (eol - pos === 2 && all[pos] === 0x0d) {
      separator = true;
      pos = eol;
      break;
    }
    const first = all.toString('latin1', pos, Math.min(eol, pos + 1000));
    const m = FIELD_NAME.exec(first);
    if (m === null) break; // not a header field: the body starts here
    let end = eol;
    while (end < all.length && (all[end] === 0x20 || all[end] === 0x09)) end = lineEnd(all, end);
    const f: HeaderField = { name: m[1] as string, raw: all.toString('latin1', pos, end) };
    if (pos === oursAt && ours !== undefined && end - pos === ours.length) f.ours = ours;
    fields.push(f);
    pos = end;
  }
  return { fields, separator, body: pos < all.length ? [all.subarray(pos)] : [] };
}

/** Index just past the CRLF (or LF) that ends the line starting at `pos`, or the end. */
function lineEnd(b: Buffer, pos: number): number {
  const nl = b.indexOf(0x0a, pos);
  return nl < 0 ? b.length : nl + 1;
}

/** What a filter is shown for a field: name and value (SMFIC_HEADER). */
export function fieldForMilter(f: HeaderField, leadingSpace: boolean): { name: string; value: string } {
  let v = f.raw.slice(f.raw.indexOf(':') + 1);
  if (!leadingSpace && v.startsWith(' ')) v = v.slice(1);
  v = v.replace(/\r?\n$/, '').replace(/\r\n/g, '\n');
  return { name: f.name, value: v };
}

/** A field built from a filter's name and value. */
function fieldFromMilter(name: string, value: string, leadingSpace: boolean): HeaderField {
  const v = value.replace(/\r?\n/g, '\r\n');
  return { name, raw: `${name}:${leadingSpace ? '' : ' '}${v}\r\n` };
}

export type HeaderEdit =
  | { type: 'addheader'; name: string; value: string }
  | { type: 'insheader'; index: number; name: string; value: string }
  | { type: 'chgheader'; index: number; name: string; value: string };

/** Applies one header edit in place. */
export function applyHeaderEdit(fields: HeaderField[], e: HeaderEdit, leadingSpace: boolean): void {
  if (e.type === 'addheader') {
    fields.push(fieldFromMilter(e.name, e.value, leadingSpace));
    return;
  }
  if (e.type === 'insheader') {
    fields.splice(Math.min(e.index, fields.length), 0, fieldFromMilter(e.name, e.value, leadingSpace));
    return;
  }
  const want = Math.max(1, e.index);
  const lname = e.name.toLowerCase();
  let seen = 0;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i] as HeaderField;
    if (f.ours !== undefined || f.name.toLowerCase() !== lname) continue;
    if (++seen < want) continue;
    if (e.value === '') fields.splice(i, 1);
    else fields[i] = fieldFromMilter(f.name, e.value, leadingSpace);
    return;
  }
  if (e.value !== '') fields.push(fieldFromMilter(e.name, e.value, leadingSpace));
}

/** A replacement body from a filter's REPLBODY chunks: lines with CRLF ends. */
export function normaliseBody(chunks: readonly Buffer[]): Buffer {
  const s = Buffer.concat(chunks as Buffer[]).toString('latin1');
  if (s === '') return Buffer.alloc(0);
  let out = s.replace(/\r?\n/g, '\r\n');
  if (!out.endsWith('\r\n')) out += '\r\n';
  return Buffer.from(out, 'latin1');
}

/** The message data again: our Received: chunk kept as the same Buffer, the rest rebuilt. */
export function joinMessage(m: SplitMessage): Buffer[] {
  const out: Buffer[] = [];
  let run = '';
  for (const f of m.fields) {
    if (f.ours !== undefined) {
      if (run !== '') out.push(Buffer.from(run, 'latin1'));
      run = '';
      out.push(f.ours);
    } else run += f.raw;
  }
  if (m.separator) run += '\r\n';
  if (run !== '') out.push(Buffer.from(run, 'latin1'));
  for (const b of m.body) if (b.length > 0) out.push(b);
  return out;
}
