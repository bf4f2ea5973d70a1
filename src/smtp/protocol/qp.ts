// Quoted-printable encoding (RFC 2045 §6.7) of line-oriented content, and base64 with 76-column
// lines (§6.8), for the 7-bit conversion of 8-bit MIME parts. Pure.
// Invariants: the output is 7-bit ASCII with CRLF line breaks and no line longer than 76
// characters; each input line break (CRLF, or a lone LF) becomes one hard CRLF break, so decoding
// gives back the input with CRLF line ends; a space or tab before a line break, "=" and every byte
// outside "!".."~" are encoded; an "=XX" triplet is never split by a soft break.

const HEX = Buffer.from('0123456789ABCDEF', 'latin1');
const MAX = 76;

/** Quoted-printable of buf[start, end). */
export function qpEncode(buf: Buffer, start = 0, end = buf.length): Buffer {
  const n = end - start;
  // Worst case: every byte "=XX", a soft break every 25 triplets, CRLF per line.
  const out = Buffer.allocUnsafe(n * 3 + Math.ceil((n * 3) / (MAX - 1)) * 3 + 16);
  let o = 0;
  let col = 0;
  const soft = () => {
    out[o++] = 61; // "="
    out[o++] = 13;
    out[o++] = 10;
    col = 0;
  };
  for (let i = start; i < end; i++) {
    const b = buf[i] ?? 0;
    if (b === 10 || (b === 13 && i + 1 < end && buf[i + 1] === 10)) {
      if (b === 13) i++;
      out[o++] = 13;
      out[o++] = 10;
      col = 0;
      continue;
    }
    const atLineEnd =
      i + 1 === end || buf[i + 1] === 10 || (buf[i + 1] === 13 && i + 2 < end && buf[i + 2] === 10);
    const literal = (b >= 33 && b <= 126 && b !== 61) || ((b === 32 || b === 9) && !atLineEnd);
    const width = literal ? 1 : 3;
    // Room for the character and, unless the line ends right after it, a soft-break "=".
    if (col + width > (atLineEnd ? MAX : MAX - 1)) soft();
    if (literal) out[o++] = b;
    else {
      out[o++] = 61;
      out[o++] = HEX[b >> 4] ?? 48;
      out[o++] = HEX[b & 15] ?? 48;
    }
    col += width;
  }
  return out.subarray(0, o);
}

/** Base64 of buf[start, end) in lines of 76 characters joined by CRLF (none after the last). */
export function base64Lines(buf: Buffer, start = 0, end = buf.length): Buffer {
  const b64 = buf.subarray(start, end).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += MAX) lines.push(b64.slice(i, i + MAX));
  return Buffer.from(lines.join('\r\n'), 'latin1');
}
