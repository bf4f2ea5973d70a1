// Client-side SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195). Used by
// the outbound session and by the ODMR customer, which must authenticate before ATRN.
// Invariant: PLAIN and LOGIN send the password in the clear, so they are only chosen over TLS
// unless the caller explicitly allows otherwise. Fails with an MtaError carrying the peer's
// reply (code AUTH_FAILED) or, when no mechanism fits, AUTH_UNAVAILABLE.

import { createHmac } from 'node:crypto';
import { MtaError } from '../../errors.js';
import type { SmtpConnection } from './connection.js';
import type { Reply } from './reply.js';
import { describeReply } from '../protocol/reply.js';

export type AuthMechanism = 'PLAIN' | 'LOGIN' | 'CRAM-MD5';

export interface AuthCredentials {
  user: string;
  pass: string;
  /** Mechanisms we may use, in order of preference; default CRAM-MD5 then PLAIN then LOGIN over plain
   *  text, PLAIN then CRAM-MD5 then LOGIN over TLS. */
  mechanisms?: AuthMechanism[];
  /** Allow PLAIN/LOGIN without TLS (tests, trusted networks). Default false. */
  allowPlaintext?: boolean;
}

/** Picks the mechanism to use, or undefined when the peer offers none we may use. */
function chooseMechanism(
  offered: readonly string[],
  creds: AuthCredentials,
  secure: boolean,
): AuthMechanism | undefined {
  const order: AuthMechanism[] =
    creds.mechanisms ?? (secure ? ['PLAIN', 'CRAM-MD5', 'LOGIN'] : ['CRAM-MD5', 'PLAIN', 'LOGIN']);
  const clearOk = secure || creds.allowPlaintext === true;
  for (const m of order) {
    if (!offered.includes(m)) continue;
    if ((m === 'PLAIN' || m === 'LOGIN') && !clearOk) continue;
    return m;
  }
  return undefined;
}

/** CRAM-MD5 response to a base64 challenge: base64("user " + hex(hmac-md5(pass, challenge))). */
export function cramMd5Response(user: string, pass: string, challengeB64: string): string {
  const challenge = Buffer.from(challengeB64.trim(), 'base64');
  const digest = createHmac('md5', pass).update(challenge).digest('hex');
  return Buffer.from(`${user} ${digest}`, 'utf8').toString('base64');
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}

/** Runs the AUTH exchange; resolves on 235, rejects with an MtaError otherwise. */
export async function authenticate(
  conn: SmtpConnection,
  offered: readonly string[],
  creds: AuthCredentials,
  timeoutMs: number,
): Promise<AuthMechanism> {
  const mech = chooseMechanism(offered, creds, conn.secure);
  if (mech === undefined) {
    throw new MtaError(
      'AUTH_UNAVAILABLE',
      'transient',
      `${conn.remote} offers no usable AUTH mechanism (offered: ${offered.join(' ') || 'none'})`,
      { smtp: { code: 454, enhanced: '4.7.0' } },
    );
  }
  let r: Reply;
  if (mech === 'PLAIN') {
    r = await conn.send(`AUTH PLAIN ${b64(`\0${creds.user}\0${creds.pass}`)}\r\n`, timeoutMs, 'AUTH reply');
  } else if (mech === 'LOGIN') {
    r = await conn.send('AUTH LOGIN\r\n', timeoutMs, 'AUTH reply');
    if (r.code === 334) r = await conn.send(`${b64(creds.user)}\r\n`, timeoutMs, 'AUTH reply');
    if (r.code === 334) r = await conn.send(`${b64(creds.pass)}\r\n`, timeoutMs, 'AUTH reply');
  } else {
    r = await conn.send('AUTH CRAM-MD5\r\n', timeoutMs, 'AUTH reply');
    if (r.code === 334) {
      const challenge = r.lines[0] ?? '';
      r = await conn.send(
        `${cramMd5Response(creds.user, creds.pass, challenge)}\r\n`,
        timeoutMs,
        'AUTH reply',
      );
    }
  }
  if (r.code === 334) {
    // The server wants more than the mechanism defines: cancel the exchange (RFC 4954 §4).
    r = await conn.send('*\r\n', timeoutMs, 'AUTH reply');
  }
  if (r.code !== 235) {
    throw new MtaError(
      'AUTH_FAILED',
      'transient',
      `AUTH ${mech} rejected by ${conn.remote}: ${describeReply(r)}`,
      {
        smtp: { code: r.code, enhanced: r.enhanced ?? `${Math.floor(r.code / 100)}.7.8` },
      },
    );
  }
  return mech;
}
