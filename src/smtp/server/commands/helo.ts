// HELO and EHLO (RFC 5321 4.1.1.1) and the EHLO extension list.
// Invariant: both reset any transaction; EHLO advertises exactly what the session will honour now
// (STARTTLS only before TLS, AUTH mechanisms per the TLS/loopback rule, ETRN only with a hook).

import type { SmtpSession } from '../session.js';

export function helo(s: SmtpSession, args: string): void {
  if (args.length === 0) {
    s.badCommand(501, '5.5.4', 'Syntax: HELO hostname');
    return;
  }
  s.resetTransaction();
  s.client.helo = args;
  s.esmtp = false;
  s.phase = 'ready';
  s.reply(250, undefined, s.opts.hostname);
}

export function ehlo(s: SmtpSession, args: string): void {
  if (args.length === 0) {
    s.badCommand(501, '5.5.4', 'Syntax: EHLO hostname');
    return;
  }
  s.resetTransaction();
  s.client.helo = args;
  s.esmtp = true;
  s.phase = 'ready';
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
