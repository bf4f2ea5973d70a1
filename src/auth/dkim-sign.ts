// DKIM signatures (RFC 6376) for outgoing mail: relaxed/relaxed, rsa-sha256 (RFC 8301) or
// ed25519-sha256 (RFC 8463), over the header fields current practice signs, with From:
// oversigned (listed once more than it occurs, so a From: added later breaks the signature).
// Canonicalisation, body hashing and tag formatting are mailauth's; the signature is node:crypto's.
// Invariant: pure given its inputs (key, header, body, time); the result is one folded
// "DKIM-Signature:" field per key, ending in CRLF, to be prepended to the message unchanged.
// The private-key operation runs on libuv's thread pool (crypto.sign with a callback), so an
// RSA-2048 signature (about a millisecond) does not hold the event loop; dkimSignaturesSync is
// the same on the event loop, for the reports the queue builds inside a batch (report-sign.ts).
// Also which keys sign for a From: domain (keysForDomain), one rule for both.
// Fails: throws MtaError DKIM_SIGN (transient) if a key cannot sign — keys are checked when the
// configuration is loaded, so this is not expected.

import { createHash, type KeyObject, sign } from 'node:crypto';
import { promisify } from 'node:util';
import { dkimBody } from 'mailauth/lib/dkim/body/index.js';
import { generateCanonicalizedHeader } from 'mailauth/lib/dkim/header/index.js';
import { formatSignatureHeaderLine, getSigningHeaderLines, parseHeaders } from 'mailauth/lib/tools.js';
import { MtaError } from '../errors.js';

export interface DkimSigningKey {
  /** d= */
  domain: string;
  /** s= */
  selector: string;
  key: KeyObject;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
}

/**
 * The header fields signed when present (RFC 6376 5.4.1, plus List-Unsubscribe-Post which
 * RFC 8058 requires to be signed). Received, Return-Path and trace fields are not: they change
 * on the way.
 */
const SIGNED_FIELDS = [
  'From',
  'Reply-To',
  'Subject',
  'Date',
  'To',
  'Cc',
  'Message-ID',
  'In-Reply-To',
  'References',
  'MIME-Version',
  'Content-Type',
  'Content-Transfer-Encoding',
  'Sender',
  'List-Id',
  'List-Help',
  'List-Unsubscribe',
  'List-Unsubscribe-Post',
  'List-Subscribe',
  'List-Post',
  'List-Owner',
  'List-Archive',
  'Resent-Date',
  'Resent-From',
  'Resent-Sender',
  'Resent-To',
  'Resent-Cc',
  'Resent-Message-ID',
].join(':');

/** Fields listed once more than they occur (an added one then fails verification). */
const OVERSIGNED = ['From'];

/** The body hash (bh=) of relaxed body canonicalisation with SHA-256. */
function bodyHash(body: readonly Buffer[]): string {
  const h = dkimBody('relaxed', 'sha256', false);
  for (const c of body) h.update(c);
  return h.digest('base64');
}

const signAsync = promisify(sign) as (alg: string | null, data: Buffer, key: KeyObject) => Promise<Buffer>;

/** The keys of `keys` that sign mail whose From: domain is `domain` (its own, or a parent's with subdomains). */
export function keysForDomain<K extends { domain: string; subdomains: boolean }>(
  keys: readonly K[],
  domain: string,
): K[] {
  return keys.filter((k) => k.domain === domain || (k.subdomains && domain.endsWith(`.${k.domain}`)));
}

/** What one key signs, and how its field is written once the signature is known. */
interface Pending {
  key: DkimSigningKey;
  /** The canonical header, ending with the DKIM-Signature field being made (b= empty). */
  data: Buffer;
  field(b: string): string;
}

function pending(
  keys: readonly DkimSigningKey[],
  header: Buffer,
  body: readonly Buffer[],
  nowMs: number,
): Pending[] {
  const bh = bodyHash(body);
  const parsed = parseHeaders(header).parsed;
  const lines = getSigningHeaderLines(parsed, SIGNED_FIELDS);
  const keysList = [lines.keys, ...OVERSIGNED].filter((k) => k !== '').join(': ');
  const signing = { keys: keysList, headers: lines.headers };
  const signTime = new Date(Math.floor(nowMs / 1000) * 1000);
  return keys.map((k) => {
    const { canonicalizedHeader, dkimHeaderOpts } = generateCanonicalizedHeader('DKIM', signing, {
      signingDomain: k.domain,
      selector: k.selector,
      algorithm: k.algorithm,
      canonicalization: 'relaxed/relaxed',
      bodyHash: bh,
      signTime,
    });
    return {
      key: k,
      data: canonicalizedHeader,
      field: (b) => `${formatSignatureHeaderLine('DKIM', { ...dkimHeaderOpts, b }, true)}\r\n`,
    };
  });
}

/** RFC 8463: Ed25519 signs the SHA-256 digest of the canonical header; RSA signs the data. */
function signArgs(p: Pending): [string | null, Buffer] {
  return p.key.algorithm === 'rsa-sha256'
    ? ['sha256', p.data]
    : [null, createHash('sha256').update(p.data).digest()];
}

function signError(k: DkimSigningKey, e: unknown): MtaError {
  return new MtaError(
    'DKIM_SIGN',
    'transient',
    `DKIM signing for ${k.domain} failed: ${(e as Error).message}`,
    {
      cause: e,
    },
  );
}

/** One DKIM-Signature field per key, in key order, each ending in CRLF. */
export async function dkimSignatures(
  keys: readonly DkimSigningKey[],
  header: Buffer,
  body: readonly Buffer[],
  nowMs: number,
): Promise<string[]> {
  if (keys.length === 0) return [];
  return Promise.all(
    pending(keys, header, body, nowMs).map(async (p) => {
      const [alg, data] = signArgs(p);
      const sig = await signAsync(alg, data, p.key.key).catch((e: unknown) => {
        throw signError(p.key, e);
      });
      return p.field(sig.toString('base64'));
    }),
  );
}

/**
 * dkimSignatures on the event loop, for a caller that cannot wait (a report is built inside the
 * queue's batch, beside the outcome it reports): about a millisecond per RSA-2048 key.
 */
export function dkimSignaturesSync(
  keys: readonly DkimSigningKey[],
  header: Buffer,
  body: readonly Buffer[],
  nowMs: number,
): string[] {
  return pending(keys, header, body, nowMs).map((p) => {
    const [alg, data] = signArgs(p);
    try {
      return p.field(sign(alg, data, p.key.key).toString('base64'));
    } catch (e) {
      throw signError(p.key, e);
    }
  });
}
