// Types for the parts of mailauth (pinned in package.json) that logmta uses. The DKIM signer is
// built from mailauth's own canonicalisation and formatting pieces, because its public signer
// cannot oversign (list From once more than it occurs); the checks use its public functions.

declare module 'mailauth/lib/tools.js' {
  export interface ParsedHeader {
    key: string | null;
    casedKey: string | undefined;
    line: Buffer;
  }
  export interface SigningLines {
    keys: string;
    headers: ParsedHeader[];
  }
  export function parseHeaders(buf: Buffer): { parsed: ParsedHeader[]; original: Buffer };
  export function getSigningHeaderLines(
    parsed: ParsedHeader[],
    fieldNames: string,
    verify?: boolean,
  ): SigningLines;
  export function formatSignatureHeaderLine(
    type: 'DKIM',
    values: Record<string, unknown>,
    folded: boolean,
  ): string;
}

declare module 'mailauth/lib/dkim/header/index.js' {
  import type { SigningLines } from 'mailauth/lib/tools.js';
  export function generateCanonicalizedHeader(
    type: 'DKIM',
    lines: SigningLines,
    options: Record<string, unknown>,
  ): { canonicalizedHeader: Buffer; dkimHeaderOpts: Record<string, unknown> };
}

declare module 'mailauth/lib/dkim/body/index.js' {
  export interface BodyHash {
    update(chunk: Buffer): void;
    digest(encoding: 'base64'): string;
  }
  export function dkimBody(
    canonicalization: string,
    algorithm: string,
    maxBodyLength: number | false,
  ): BodyHash;
}
