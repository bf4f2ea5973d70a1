// Pure helpers over a message as the SMTP session hands it over (Buffer chunks, CRLF lines):
// where the header section ends, the header fields, and the domains of the From: field.
// Invariant: nothing here copies the body; the header section is at most the bytes before the
// first empty line (the whole message when there is none). Never throws.

import { domainOf } from '../util/domain.js';

/** The header section (with its final CRLF, without the empty line) and the body chunks. */
export interface SplitMessage {
  header: Buffer;
  body: Buffer[];
}

export function splitMessage(chunks: readonly Buffer[]): SplitMessage {
  const head: Buffer[] = [];
  // How much of CR LF CR LF has been seen, across chunk boundaries; the start of the message
  // counts as a line start (state 2), so a message opening with an empty line has no header.
  let state = 2;
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c] as Buffer;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 0x0d) state = state === 2 ? 3 : 1;
      else if (b === 0x0a && state === 1) state = 2;
      else if (b === 0x0a && state === 3) {
        // chunk[..i] ends with the empty line: the header is everything before its CRLF
        const all = Buffer.concat([...head, chunk.subarray(0, i + 1)]);
        const header = all.subarray(0, Math.max(0, all.length - 2));
        const body = [chunk.subarray(i + 1), ...chunks.slice(c + 1)].filter((b2) => b2.length > 0);
        return { header, body };
      } else state = 0;
    }
    head.push(chunk);
  }
  return { header: Buffer.concat(head), body: [] };
}

/** Header fields in order: name as written (trimmed) and the raw field (folded, without the final CRLF). */
export function headerFields(header: Buffer): { name: string; raw: string }[] {
  const text = header.toString('latin1');
  const out: { name: string; raw: string }[] = [];
  for (const line of text.split('\r\n')) {
    if (line === '') continue;
    const last = out[out.length - 1];
    if ((line.startsWith(' ') || line.startsWith('\t')) && last) last.raw += `\r\n${line}`;
    else {
      const colon = line.indexOf(':');
      out.push({ name: colon > 0 ? line.slice(0, colon).trim() : '', raw: line });
    }
  }
  return out;
}

/** Removes comments (nested parentheses) and quoted strings, keeping the rest. */
function stripCommentsAndQuotes(s: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (ch === '\\' && (quoted || depth > 0)) {
      i++;
      continue;
    }
    if (quoted) {
      if (ch === '"') quoted = false;
      continue;
    }
    if (ch === '(') depth++;
    else if (ch === ')' && depth > 0) depth--;
    else if (depth === 0) {
      if (ch === '"') quoted = true;
      else out += ch;
    }
  }
  return out;
}

/**
 * The lower-cased domains of the addresses in every From: field (RFC 5322 3.6.2), in order; a
 * field whose address cannot be read contributes nothing.
 */
export function fromDomains(header: Buffer): string[] {
  const out: string[] = [];
  for (const f of headerFields(header)) {
    if (f.name.toLowerCase() !== 'from') continue;
    const value = stripCommentsAndQuotes(f.raw.slice(f.raw.indexOf(':') + 1).replace(/\r\n/g, ''));
    // group syntax "name: a@b, c@d;" — the addresses are after the colon
    const body = value.includes(':') && !value.includes('<') ? value.slice(value.indexOf(':') + 1) : value;
    for (const part of body.split(/[,;]/)) {
      const angle = /<([^>]*)>/.exec(part);
      const addr = (angle ? angle[1] : part)?.trim() ?? '';
      const d = addr.lastIndexOf('@') > 0 ? domainOf(addr) : '';
      if (d !== '') out.push(d);
    }
  }
  return out;
}
