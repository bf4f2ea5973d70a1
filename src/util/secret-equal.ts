// Comparing a secret the client sent with the one we hold (passwords, tokens) without leaking,
// through timing, how many leading bytes matched or how long the secret is: both sides are
// hashed to fixed-length SHA-256 digests, which crypto.timingSafeEqual compares in constant
// time. Pure; never throws.

import { createHash, timingSafeEqual } from 'node:crypto';

/** SHA-256 of the UTF-8 text: a fixed-length stand-in for a secret, for timingSafeEqual. */
export function secretDigest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Whether `given` equals `expected`, in time independent of where (or whether) they differ. */
export function secretEquals(expected: string, given: string): boolean {
  return timingSafeEqual(secretDigest(expected), secretDigest(given));
}
