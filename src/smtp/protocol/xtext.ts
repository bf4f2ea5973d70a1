// xtext (RFC 3461 section 4): the encoding of DSN ENVID/ORCPT values and the MAIL AUTH= parameter.
//   xtext = *( xchar / hexchar ); xchar = "!".."~" except "+" and "="; hexchar = "+" 2(HEX upper)
// Invariant: decodeXtext(encodeXtext(s)) === s for every string whose UTF-8 is what we encode.
// decodeXtext returns null for malformed input (the caller replies 501); it never throws.

function isXchar(c: number): boolean {
  return c >= 33 && c <= 126 && c !== 43 && c !== 61;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Decode xtext to a string (bytes interpreted as UTF-8), or null when the syntax is invalid. */
export function decodeXtext(s: string): string | null {
  if (s.indexOf('+') === -1) {
    for (let i = 0; i < s.length; i++) if (!isXchar(s.charCodeAt(i))) return null;
    return s;
  }
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 43) {
      const h = hexVal(s.charCodeAt(i + 1));
      const l = hexVal(s.charCodeAt(i + 2));
      if (h < 0 || l < 0) return null;
      bytes.push(h * 16 + l);
      i += 2;
    } else if (isXchar(c)) {
      bytes.push(c);
    } else {
      return null;
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Encode a string (as UTF-8 bytes) to xtext. */
export function encodeXtext(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out += isXchar(b) ? String.fromCharCode(b) : '+' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}
