// RSET, NOOP, QUIT, VRFY, HELP, ETRN and the 502 for known-but-unimplemented verbs. RSET, NOOP,
// VRFY and HELP are junk when a client sends too many of them without mail (SmtpSession.junk).
// Invariant: ETRN answers at once from the hook (RFC 1985; delivery happens elsewhere) and is
// refused inside a transaction or before HELO (503, via the table's phases).

import { smtpStatusOf } from '../../../errors.js';
import type { SmtpSession } from '../session.js';
import { settle } from './util.js';

export function rset(s: SmtpSession, args: string): void {
  if (args.length > 0) {
    s.badCommand(501, '5.5.4', 'Syntax: RSET');
    return;
  }
  s.resetTransaction();
  s.reply(250, '2.0.0', 'Ok');
  s.junk();
}

export function noop(s: SmtpSession): void {
  s.reply(250, '2.0.0', 'Ok');
  s.junk();
}

export function quit(s: SmtpSession): void {
  s.reply(221, '2.0.0', 'Bye');
  s.close();
}

export function vrfy(s: SmtpSession, args: string): void {
  if (args.length === 0) {
    s.badCommand(501, '5.5.4', 'Syntax: VRFY address');
    return;
  }
  s.reply(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery');
  s.junk();
}

/** HELP: the commands this session can use now (what EHLO would offer, plus the basics). */
export function help(s: SmtpSession): void {
  const cmds = ['EHLO', 'HELO', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'HELP'];
  if (s.io.startTls && !s.client.tls) cmds.push('STARTTLS');
  if (s.client.auth === undefined && (s.hooks.verifyPassword || s.hooks.cramSecret)) cmds.push('AUTH');
  if (s.hooks.etrn) cmds.push('ETRN');
  s.reply(214, '2.0.0', [`Commands: ${cmds.join(' ')}`, 'See RFC 5321']);
  s.junk();
}

export function notImplemented(s: SmtpSession): void {
  s.badCommand(502, '5.5.1', 'Command not implemented');
}

const NODE = /^[@#]?[^\s@#]+$/;

export function etrn(s: SmtpSession, args: string): void | Promise<void> {
  const hook = s.hooks.etrn;
  if (hook === undefined) return notImplemented(s);
  if (args.length === 0 || !NODE.test(args)) {
    s.badCommand(501, '5.5.4', 'Syntax Error in Parameters');
    return;
  }
  const sticky = s.stickyRefusal;
  if (sticky !== null) {
    s.sendReply(sticky);
    return;
  }
  let r: ReturnType<typeof hook>;
  try {
    r = hook(args, s);
  } catch (e) {
    const st = smtpStatusOf(e);
    s.reply(458, st.enhanced[0] === '4' ? st.enhanced : '4.0.0', `Unable to queue messages for node ${args}`);
    return;
  }
  const p = settle(r, (reply) => s.sendReply(reply));
  if (p === undefined) return;
  return p.catch(() => {
    s.reply(458, '4.0.0', `Unable to queue messages for node ${args}`);
  });
}
