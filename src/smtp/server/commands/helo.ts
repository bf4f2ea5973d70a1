// HELO and EHLO (RFC 5321 4.1.1.1) and the EHLO extension list.
// Invariant: both reset any transaction; EHLO advertises exactly what the session will honour now
// (STARTTLS only before TLS, AUTH mechanisms per the TLS/loopback rule, ETRN only with a hook).

import type { SmtpSession } from '../session.js';
import { settle } from './util.js';

/**
 * What HELO, EHLO (and the ODMR listener's EHLO) share: a name is required, any transaction is
 * reset and the session is ready. Returns false when it already answered with a syntax error.
 */
export function greet(s: SmtpSession, verb: 'HELO' | 'EHLO', args: string): boolean {
  if (args.length === 0) {
    s.badCommand(501, '5.5.4', `Syntax: ${verb} hostname`);
    return false;
  }
  s.resetTransaction();
  s.client.helo = args;
  s.esmtp = verb === 'EHLO';
  s.phase = 'ready';
  return true;
}

/**
 * Runs the HELO hook, if any: a 421 closes the session, another refusal is kept for MAIL (see
 * hooks.ts), and `answer` sends the normal reply.
 */
function afterHook(s: SmtpSession, name: string, answer: () => void): void | Promise<void> {
  const hook = s.hooks.checkHelo;
  if (hook === undefined) return answer();
  return settle(hook(name, s), (refusal) => {
    if (refusal !== null && refusal.code === 421) {
      s.sendReply(refusal);
      s.close();
      return;
    }
    s.heloRefusal = refusal;
    answer();
  });
}

export function helo(s: SmtpSession, args: string): void | Promise<void> {
  if (!greet(s, 'HELO', args)) return;
  return afterHook(s, args, () => s.reply(250, undefined, s.opts.hostname));
}

export function ehlo(s: SmtpSession, args: string): void | Promise<void> {
  if (!greet(s, 'EHLO', args)) return;
  return afterHook(s, args, () => ehloReply(s, args));
}

function ehloReply(s: SmtpSession, args: string): void {
  const o = s.opts;
  const lines = [
    `${o.hostname} Hello ${args} [${s.client.ip}]`,
    'PIPELINING',
    `SIZE ${o.maxMessageSize}`,
    '8BITMIME',
    'SMTPUTF8',
    'ENHANCEDSTATUSCODES',
    'CHUNKING',
    'DSN',
  ];
  if (o.binaryMime) lines.push('BINARYMIME');
  if (s.io.startTls && !s.client.tls) lines.push('STARTTLS');
  if (s.client.auth === undefined) {
    const mechs = s.authMechanisms();
    if (mechs.length > 0) lines.push(`AUTH ${mechs.join(' ')}`);
  }
  if (s.hooks.etrn) lines.push('ETRN');
  for (const x of o.extraEhlo) lines.push(x);
  s.reply(250, undefined, lines);
}
