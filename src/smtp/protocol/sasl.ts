// SASL encodings for SMTP AUTH (RFC 4954): base64 lines, PLAIN (RFC 4616), LOGIN (draft-murchison-
// sasl-login), CRAM-MD5 (RFC 2195).
// Invariant: decoders are strict (canonical base64 only, NUL-separated PLAIN with exactly three
// fields, no NUL inside fields) and return null on malformed input; the session answers 501 5.5.2.
// CRAM-MD5 comparison is constant-time. Pure apart from reading randomness for challenges when no
// nonce is supplied; never throws.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Decode one base64 SASL line ("=" is the empty response). Null when not base64. */
export function decodeBase64Line(s: string): Buffer | null {
  if (s === '=') return Buffer.alloc(0);
  if (!B64.test(s)) return null;
  return Buffer.from(s, 'base64');
}

export function encodeBase64(s: string | Buffer): string {
  return Buffer.from(s).toString('base64');
}

export interface PlainCredentials {
  authzid: string;
  username: string;
  password: string;
}

/** Parse a decoded PLAIN message: [authzid] NUL authcid NUL passwd. */
export function parsePlain(msg: Buffer): PlainCredentials | null {
  const a = msg.indexOf(0);
  if (a === -1) return null;
  const b = msg.indexOf(0, a + 1);
  if (b === -1 || msg.indexOf(0, b + 1) !== -1) return null;
  const username = msg.toString('utf8', a + 1, b);
  const password = msg.toString('utf8', b + 1);
  if (username.length === 0) return null;
  return { authzid: msg.toString('utf8', 0, a), username, password };
}

/** A CRAM-MD5 challenge "<nonce.time@hostname>". */
export function cramChallenge(hostname: string, nowMs: number, nonce?: string): string {
  const n = nonce ?? randomBytes(9).toString('hex');
  return `<${n}.${Math.floor(nowMs / 1000)}@${hostname}>`;
}

/** Split a decoded CRAM-MD5 response "username SP hex-digest". */
export function parseCramResponse(msg: Buffer): { username: string; digest: string } | null {
  const s = msg.toString('utf8');
  const sp = s.lastIndexOf(' ');
  if (sp <= 0) return null;
  const digest = s.slice(sp + 1).toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(digest)) return null;
  return { username: s.slice(0, sp), digest };
}

/** The expected CRAM-MD5 digest: hex HMAC-MD5(secret, challenge). */
export function cramDigest(secret: string, challenge: string): string {
  return createHmac('md5', secret).update(challenge).digest('hex');
}

/** Constant-time check of a CRAM-MD5 digest. */
export function cramVerify(secret: string, challenge: string, digest: string): boolean {
  const want = Buffer.from(cramDigest(secret, challenge), 'latin1');
  const got = Buffer.from(digest.toLowerCase(), 'latin1');
  return want.length === got.length && timingSafeEqual(want, got);
}
