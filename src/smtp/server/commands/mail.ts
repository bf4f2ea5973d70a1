// MAIL FROM and RCPT TO (RFC 5321 4.1.1.2-3) with SIZE, BODY, SMTPUTF8, DSN and AUTH parameters.
// Invariants: a transaction starts only after the sender is accepted; its message id is taken from
// hooks.newMessageId() then (our Received: header needs it before the queue has seen the message).
// Submission mode refuses MAIL before AUTH (530 5.7.0). A refusal left by the connect or HELO hook
// answers every MAIL. At most maxRecipients recipients
// (452 4.5.3 beyond). A recipient given again (the same address, its domain compared without
// case, with the same DSN parameters) is answered 250 and not added: one delivery and at most one
// report per recipient, as Postfix's cleanup does.
// hooks.admitTransaction may refuse a new transaction (452 4.3.1 while memory is short).
// The per-client rates (client-rates.ts) refuse a MAIL or RCPT over them with 450 4.7.1, as
// Postfix's anvil limits do; in a cluster their answer is a promise (the count is in Redis).

import { withAsciiDomain } from '../../protocol/address.js';
import {
  type ArgsResult,
  type MailParams,
  paramWords,
  parseMailArgs,
  parseRcptArgs,
} from '../../protocol/params.js';
import type { RecipientEntry } from '../hooks.js';
import type { SmtpSession } from '../session.js';
import { addressKey } from '../../../util/domain.js';
import { shownIp } from '../client-rates.js';
import { settle } from './util.js';

type MailArgs = Extract<ArgsResult<MailParams>, { ok: true }>;

export function mail(s: SmtpSession, args: string): void | Promise<void> {
  if (s.opts.submission && s.client.auth === undefined) {
    s.reply(530, '5.7.0', 'Authentication required');
    return;
  }
  const r = parseMailArgs(args);
  if (!r.ok) {
    if (r.reply.code === 501 || r.reply.code === 555)
      s.badCommand(r.reply.code, r.reply.enhanced ?? '5.5.4', String(r.reply.text));
    else s.sendReply(r.reply);
    return;
  }
  const p = r.params;
  if (p.body === 'BINARYMIME' && !s.opts.binaryMime) {
    s.reply(555, '5.5.4', 'BODY=BINARYMIME not supported');
    return;
  }
  if (!s.esmtp && Object.keys(p).length > 0) {
    s.reply(555, '5.5.4', 'ESMTP parameters require EHLO');
    return;
  }
  if (p.size !== undefined && p.size > s.opts.maxMessageSize) {
    s.reply(552, '5.3.4', 'Message size exceeds fixed maximum message size');
    return;
  }
  const sticky = s.stickyRefusal;
  if (sticky !== null) {
    s.sendReply(sticky);
    return;
  }
  // Postfix's smtpd_client_message_rate_limit: MAIL commands per client and window (in a
  // cluster counted in Redis: a promise; commands are serialised meanwhile).
  const rated = s.opts.clientRates?.allow('message', s.client.ip) ?? true;
  if (rated === true) return openTransaction(s, r);
  return settle(rated, (ok) => {
    if (ok) return openTransaction(s, r);
    s.reply(450, '4.7.1', `Error: too much mail from ${shownIp(s.client.ip)}`);
  });
}

/** MAIL past its checks and the client's message rate: memory, the sender, the checkSender hook. */
function openTransaction(s: SmtpSession, r: MailArgs): void | Promise<void> {
  const p = r.params;
  // While too much mail is held in memory (e.g. a disk slower than the network), new
  // transactions wait: the client retries later.
  const busy = s.hooks.admitTransaction?.(s);
  if (busy) {
    s.sendReply(busy);
    return;
  }
  // A domain in U-labels (SMTPUTF8) is the same domain as its A-labels, which routing, DNS and
  // bounces use.
  const address = withAsciiDomain(r.path.address);
  if (address === undefined) {
    s.badCommand(501, '5.1.7', 'Bad sender address domain');
    return;
  }
  const start = (): void => {
    s.tx = { id: s.hooks.newMessageId(), sender: address, params: p, recipients: [] };
    s.bdatFailed = null;
    if (r.path.sourceRoute) s.tx.sourceRoute = r.path.sourceRoute;
    s.phase = 'mail';
    s.reply(250, '2.1.0', 'Ok');
  };
  if (!s.hooks.checkSender) return start();
  return settle(s.hooks.checkSender(address, s, paramWords(r.rest)), (refusal) => {
    if (refusal) s.refuse(refusal);
    else start();
  });
}

export function rcpt(s: SmtpSession, args: string): void | Promise<void> {
  const tx = s.tx;
  if (tx === null) {
    s.badCommand(503, '5.5.1', 'Need MAIL before RCPT');
    return;
  }
  const r = parseRcptArgs(args, tx.params.smtputf8 === true);
  if (!r.ok) {
    if (r.reply.code === 501 || r.reply.code === 555)
      s.badCommand(r.reply.code, r.reply.enhanced ?? '5.5.4', String(r.reply.text));
    else s.sendReply(r.reply);
    return;
  }
  if (!s.esmtp && Object.keys(r.params).length > 0) {
    s.reply(555, '5.5.4', 'ESMTP parameters require EHLO');
    return;
  }
  if (tx.recipients.length >= s.opts.maxRecipients) {
    s.reply(452, '4.5.3', 'Too many recipients');
    return;
  }
  // The domain in A-labels: "hans@müller.test" is the local or relay domain xn--mller-kva.test.
  const address = withAsciiDomain(r.path.address);
  if (address === undefined) {
    s.badCommand(501, '5.1.3', 'Bad recipient address domain');
    return;
  }
  const entry: RecipientEntry = { address };
  if (r.params.notify !== undefined) entry.notify = r.params.notify;
  if (r.params.orcpt !== undefined) entry.orcpt = r.params.orcpt;
  if (tx.recipients.some((e) => sameRecipient(e, entry))) {
    s.reply(250, '2.1.5', 'Ok (duplicate recipient)');
    return;
  }
  // Postfix's smtpd_client_recipient_rate_limit: RCPT commands per client and window, counted
  // before our checks (an address harvester's unknown users count too).
  const rated = s.opts.clientRates?.allow('recipient', s.client.ip) ?? true;
  if (rated === true) return addRecipient(s, tx, entry, r.rest);
  return settle(rated, (ok) => {
    if (ok) return addRecipient(s, tx, entry, r.rest);
    s.reply(450, '4.7.1', `Error: too many recipients from ${shownIp(s.client.ip)}`);
  });
}

/** RCPT past its checks and the client's recipient rate: the checkRecipient hook, then added. */
function addRecipient(
  s: SmtpSession,
  tx: NonNullable<SmtpSession['tx']>,
  entry: RecipientEntry,
  rest: string,
): void | Promise<void> {
  const add = (): void => {
    if (s.tx !== tx) return; // transaction was reset while the hook ran (cannot happen: serialised)
    tx.recipients.push(entry);
    s.phase = 'rcpt';
    s.reply(250, '2.1.5', 'Ok');
  };
  if (!s.hooks.checkRecipient) return add();
  return settle(s.hooks.checkRecipient(entry.address, s, paramWords(rest)), (refusal) => {
    if (refusal) s.refuse(refusal);
    else add();
  });
}

/** Whether `b` repeats `a`: the same address (domain without case) and the same DSN parameters. */
function sameRecipient(a: RecipientEntry, b: RecipientEntry): boolean {
  return (
    addressKey(a.address) === addressKey(b.address) &&
    String(a.notify) === String(b.notify) &&
    a.orcpt?.type === b.orcpt?.type &&
    a.orcpt?.address === b.orcpt?.address
  );
}
