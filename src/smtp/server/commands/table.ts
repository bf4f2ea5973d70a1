// The command table: verb -> handler and flags, as data (no dynamic method lookup). The session
// consults it for every command line; an ODMR listener can build its own table from these parts.
// Invariant: every verb in RFC 2920's group-terminator list that we implement has endsGroup set;
// `phases` lists where the command is in sequence (elsewhere: 503 5.5.1 with outOfSequence text).

import type { Phase, SmtpSession } from '../session.js';
import type { ServerHooks } from '../hooks.js';
import { auth } from './auth.js';
import { bdat, data, finishBdat, finishData } from './data.js';
import { ehlo, helo } from './helo.js';
import { mail, rcpt } from './mail.js';
import { etrn, help, noop, notImplemented, quit, rset, vrfy } from './misc.js';
import { starttls } from './starttls.js';

export interface CommandSpec {
  handler: (s: SmtpSession, args: string) => void | Promise<void>;
  /** RFC 2920: flush the batched replies after this command. */
  endsGroup: boolean;
  /** Phases in which the command is in sequence. */
  phases: readonly Phase[];
  /** Text of the 503 reply out of sequence. */
  outOfSequence?: (s: SmtpSession) => string;
}

export interface CommandTable {
  verbs: ReadonlyMap<string, CommandSpec>;
  /** Called when a DATA body has been read completely (its terminator consumed). */
  finishData: (s: SmtpSession) => void | Promise<void>;
  /** Called when a BDAT chunk has been read completely. */
  finishBdat: (s: SmtpSession) => void | Promise<void>;
}

export const ANY: readonly Phase[] = ['init', 'ready', 'mail', 'rcpt', 'bdat'];
const inTransaction = (s: SmtpSession): string =>
  s.phase === 'init' ? 'Send HELO/EHLO first' : 'Not allowed during a mail transaction';

export function defaultVerbs(hooks: ServerHooks): Map<string, CommandSpec> {
  const m = new Map<string, CommandSpec>();
  m.set('EHLO', { handler: ehlo, endsGroup: true, phases: ANY });
  m.set('HELO', { handler: helo, endsGroup: true, phases: ANY });
  m.set('MAIL', {
    handler: mail,
    endsGroup: false,
    phases: ['ready'],
    outOfSequence: (s) => (s.phase === 'init' ? 'Send HELO/EHLO first' : 'Nested MAIL command'),
  });
  m.set('RCPT', {
    handler: rcpt,
    endsGroup: false,
    phases: ['mail', 'rcpt'],
    outOfSequence: (s) => (s.phase === 'bdat' ? 'RCPT not allowed after BDAT' : 'Need MAIL before RCPT'),
  });
  m.set('DATA', {
    handler: data,
    endsGroup: true,
    phases: ['mail', 'rcpt'],
    outOfSequence: (s) => (s.phase === 'bdat' ? 'DATA not allowed after BDAT' : 'Need RCPT before DATA'),
  });
  // BDAT checks its own sequence: a refused chunk must still be read and discarded.
  m.set('BDAT', { handler: bdat, endsGroup: false, phases: ANY });
  m.set('RSET', { handler: rset, endsGroup: false, phases: ANY });
  m.set('NOOP', { handler: noop, endsGroup: true, phases: ANY });
  m.set('QUIT', { handler: quit, endsGroup: true, phases: ANY });
  m.set('VRFY', { handler: vrfy, endsGroup: true, phases: ANY });
  m.set('HELP', { handler: help, endsGroup: true, phases: ANY });
  m.set('STARTTLS', { handler: starttls, endsGroup: true, phases: ['ready'], outOfSequence: inTransaction });
  m.set('AUTH', { handler: auth, endsGroup: true, phases: ['ready'], outOfSequence: inTransaction });
  m.set(
    'ETRN',
    hooks.etrn
      ? { handler: etrn, endsGroup: true, phases: ['ready'], outOfSequence: inTransaction }
      : { handler: notImplemented, endsGroup: true, phases: ANY },
  );
  for (const v of ['EXPN', 'ATRN', 'TURN', 'SEND', 'SOML', 'SAML']) {
    m.set(v, { handler: notImplemented, endsGroup: true, phases: ANY });
  }
  return m;
}

/** The standard ESMTP server table. */
export function defaultCommands(hooks: ServerHooks): CommandTable {
  return { verbs: defaultVerbs(hooks), finishData, finishBdat };
}
