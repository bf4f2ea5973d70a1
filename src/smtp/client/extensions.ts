// ESMTP extensions offered by a peer, parsed from its EHLO reply (pure). A HELO session has
// none. Unknown keywords are kept (upper-cased) so callers can look for ETRN, ATRN and the like.
// Invariant: parsing never throws; a malformed SIZE argument counts as "SIZE without a limit".

import type { Reply } from './reply.js';

export interface Extensions {
  /** Every keyword offered, upper case, mapped to its parameters. */
  keywords: Map<string, string[]>;
  pipelining: boolean;
  /** undefined: SIZE not offered; 0: offered without a limit; otherwise the limit in bytes. */
  size: number | undefined;
  eightBitMime: boolean;
  /** BINARYMIME (RFC 3030): BODY=BINARYMIME, sent with BDAT only. */
  binaryMime: boolean;
  smtputf8: boolean;
  dsn: boolean;
  chunking: boolean;
  starttls: boolean;
  enhancedStatusCodes: boolean;
  /** AUTH mechanisms, upper case (also from the old "AUTH=" form). */
  auth: string[];
}

export function noExtensions(): Extensions {
  return {
    keywords: new Map(),
    pipelining: false,
    size: undefined,
    eightBitMime: false,
    binaryMime: false,
    smtputf8: false,
    dsn: false,
    chunking: false,
    starttls: false,
    enhancedStatusCodes: false,
    auth: [],
  };
}

/** Parses the lines of a 250 EHLO reply; the first line is the greeting and is skipped. */
export function parseEhlo(reply: Reply): Extensions {
  const ext = noExtensions();
  const auth = new Set<string>();
  for (let i = 1; i < reply.lines.length; i++) {
    const line = (reply.lines[i] ?? '').trim();
    if (line.length === 0) continue;
    let words = line.split(/\s+/);
    let kw = (words[0] ?? '').toUpperCase();
    if (kw.startsWith('AUTH=')) {
      // Pre-RFC form used by old servers: "AUTH=LOGIN PLAIN".
      words = ['AUTH', kw.slice(5), ...words.slice(1)];
      kw = 'AUTH';
    }
    const params = words.slice(1);
    const prev = ext.keywords.get(kw);
    ext.keywords.set(kw, prev ? [...prev, ...params] : params);
    switch (kw) {
      case 'PIPELINING':
        ext.pipelining = true;
        break;
      case 'SIZE': {
        const n = params[0] === undefined ? 0 : Number(params[0]);
        ext.size = Number.isSafeInteger(n) && n > 0 ? n : 0;
        break;
      }
      case '8BITMIME':
        ext.eightBitMime = true;
        break;
      case 'BINARYMIME':
        ext.binaryMime = true;
        break;
      case 'SMTPUTF8':
        ext.smtputf8 = true;
        break;
      case 'DSN':
        ext.dsn = true;
        break;
      case 'CHUNKING':
        ext.chunking = true;
        break;
      case 'STARTTLS':
        ext.starttls = true;
        break;
      case 'ENHANCEDSTATUSCODES':
        ext.enhancedStatusCodes = true;
        break;
      case 'AUTH':
        for (const m of params) if (m.length > 0) auth.add(m.toUpperCase());
        break;
    }
  }
  ext.auth = [...auth];
  return ext;
}
