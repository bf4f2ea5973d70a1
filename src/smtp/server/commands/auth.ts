// AUTH (RFC 4954) with PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195).
// Invariants:
// - PLAIN and LOGIN (cleartext passwords) are offered and accepted only over TLS, from loopback
//   clients, or when allowPlainWithoutTls is set; otherwise 538 5.7.11.
// - One successful AUTH per session (503 afterwards); not inside a transaction (table phases).
// - An authzid different from the authenticated user is refused (we do not implement proxy auth).
// - Failures go through the per-IP throttle: the 535 is delayed, and a blocked client gets
//   421 4.7.0 and is disconnected.
// Fails: hook rejections are answered 454 4.7.0 (temporary authentication failure).

import {
  cramChallenge,
  cramVerify,
  decodeBase64Line,
  encodeBase64,
  parseCramResponse,
  parsePlain,
} from '../../protocol/sasl.js';
import type { SmtpSession } from '../session.js';
import { settle } from './util.js';

const USERNAME_PROMPT = encodeBase64('Username:');
const PASSWORD_PROMPT = encodeBase64('Password:');

function blocked(s: SmtpSession): void {
  s.reply(421, '4.7.0', `${s.opts.hostname} Too many authentication failures`);
  s.close();
}

export function auth(s: SmtpSession, args: string): void | Promise<void> {
  if (s.client.auth !== undefined) {
    s.badCommand(503, '5.5.1', 'Already authenticated');
    return;
  }
  if (!s.esmtp) {
    s.badCommand(503, '5.5.1', 'Send EHLO first');
    return;
  }
  const isBlocked = s.opts.authThrottle?.isBlocked(s.client.ip) ?? false;
  return settle(isBlocked, (b) => (b ? blocked(s) : start(s, args)));
}

function start(s: SmtpSession, args: string): void | Promise<void> {
  const parts = args.split(' ');
  const mech = (parts[0] ?? '').toUpperCase();
  const initial = parts[1];
  if (mech.length === 0 || parts.length > 2) {
    s.badCommand(501, '5.5.4', 'Syntax: AUTH mechanism [initial-response]');
    return;
  }
  const offered = s.authMechanisms();
  if (!s.hooks.verifyPassword && !s.hooks.cramSecret) {
    s.badCommand(503, '5.5.1', 'Authentication not enabled');
    return;
  }
  if (!offered.includes(mech)) {
    if ((mech === 'PLAIN' || mech === 'LOGIN') && s.hooks.verifyPassword) {
      s.reply(538, '5.7.11', 'Encryption required for requested authentication mechanism');
    } else {
      s.badCommand(504, '5.5.4', 'Unrecognized authentication type');
    }
    return;
  }
  switch (mech) {
    case 'PLAIN':
      if (initial === undefined) {
        s.reply(334, undefined, '');
        s.setSaslStep((line) => plainStep(s, line));
        return;
      }
      return plainStep(s, initial);
    case 'LOGIN':
      if (initial === undefined) {
        s.reply(334, undefined, USERNAME_PROMPT);
        s.setSaslStep((line) => loginUser(s, line));
        return;
      }
      return loginUser(s, initial);
    case 'CRAM-MD5': {
      if (initial !== undefined) {
        s.badCommand(501, '5.5.4', 'CRAM-MD5 takes no initial response');
        return;
      }
      const challenge = cramChallenge(s.opts.hostname, s.opts.clock.now());
      s.reply(334, undefined, encodeBase64(challenge));
      s.setSaslStep((line) => cramStep(s, challenge, line));
      return;
    }
  }
}

function decode(s: SmtpSession, line: string): Buffer | null {
  const b = decodeBase64Line(line);
  if (b === null) s.badCommand(501, '5.5.2', 'Invalid base64 data');
  return b;
}

function plainStep(s: SmtpSession, line: string): void | Promise<void> {
  const b = decode(s, line);
  if (b === null) return;
  const creds = parsePlain(b);
  if (creds === null) {
    s.badCommand(501, '5.5.2', 'Invalid PLAIN response');
    return;
  }
  if (creds.authzid !== '' && creds.authzid !== creds.username) return failed(s, creds.username);
  return checkPassword(s, 'PLAIN', creds.username, creds.password);
}

function loginUser(s: SmtpSession, line: string): void {
  const b = decode(s, line);
  if (b === null) return;
  const username = b.toString('utf8');
  s.reply(334, undefined, PASSWORD_PROMPT);
  s.setSaslStep((l) => {
    const p = decode(s, l);
    if (p === null) return;
    return checkPassword(s, 'LOGIN', username, p.toString('utf8'));
  });
}

function checkPassword(
  s: SmtpSession,
  mech: string,
  username: string,
  password: string,
): void | Promise<void> {
  const verify = s.hooks.verifyPassword;
  if (!verify || username.length === 0) return failed(s, username);
  return guard(s, () =>
    settle(verify(username, password, s), (ok) => (ok ? succeeded(s, mech, username) : failed(s, username))),
  );
}

function cramStep(s: SmtpSession, challenge: string, line: string): void | Promise<void> {
  const b = decode(s, line);
  if (b === null) return;
  const r = parseCramResponse(b);
  if (r === null) {
    s.badCommand(501, '5.5.2', 'Invalid CRAM-MD5 response');
    return;
  }
  const secretOf = s.hooks.cramSecret;
  if (!secretOf) return failed(s, r.username);
  return guard(s, () =>
    settle(secretOf(r.username, s), (secret) =>
      secret !== null && cramVerify(secret, challenge, r.digest)
        ? succeeded(s, 'CRAM-MD5', r.username)
        : failed(s, r.username),
    ),
  );
}

/** Run a hook call; a throw or rejection is a temporary failure (454), not a crash. */
function guard(s: SmtpSession, fn: () => void | Promise<void>): void | Promise<void> {
  const temp = (): void => s.reply(454, '4.7.0', 'Temporary authentication failure');
  try {
    const r = fn();
    return r === undefined ? r : r.catch(temp);
  } catch {
    temp();
  }
}

function succeeded(s: SmtpSession, mech: string, username: string): void {
  s.client.auth = username;
  s.client.authMechanism = mech;
  s.opts.authThrottle?.success(s.client.ip);
  s.opts.logger?.info({ ip: s.client.ip, user: username }, 'auth ok');
  s.reply(235, '2.7.0', 'Authentication successful');
}

function failed(s: SmtpSession, username: string): void | Promise<void> {
  s.opts.logger?.warn({ ip: s.client.ip, user: username }, 'auth failed');
  const throttle = s.opts.authThrottle;
  if (throttle === undefined) {
    s.badCommand(535, '5.7.8', 'Authentication credentials invalid');
    return;
  }
  return settle(throttle.failure(s.client.ip), (t) => {
    const answer = (): void => {
      s.badCommand(535, '5.7.8', 'Authentication credentials invalid');
      if (t.blocked) blocked(s);
    };
    if (t.delayMs <= 0) return answer();
    return s.tarpit(t.delayMs).then(answer);
  });
}
