// DATA (RFC 5321 4.1.1.4) and BDAT (RFC 3030 CHUNKING), and the end of a message: Received: header,
// hand-over to hooks.accept, final reply. The data goes to a sink as it arrives (hooks.openData,
// opened at 354 / the first BDAT with our Received: header, stamped then, as Postfix does).
// Invariants:
// - The final 250 is sent only after hooks.accept resolved (DESIGN rule 1: durable). Commands
//   pipelined after the end of data wait until then (the session is busy), so replies never reorder.
// - A BDAT chunk is always read to its announced length, even when refused, so the stream stays in
//   sync; a refused or failed chunk resets the transaction, and the chunks the client pipelined
//   after it, up to its BDAT LAST, are read, discarded and answered with the same reply, never
//   counted as bad commands (RFC 3030 §2: "MUST be prepared to accept and discard additional
//   BDAT chunks already in the pipeline after the failed BDAT").
// - Body policy errors (size, line length, bare CR, NUL, loop) are answered after the whole body
//   was read (see protocol/body.ts).
// - The sink belongs to the transaction until accept() is called with it; from then on accept()
//   owns it, and a rejected accept aborts it.

import { isMtaError, smtpStatusOf } from '../../../errors.js';
import { BodyReader, bodyErrorReply } from '../../protocol/body.js';
import type { MessageSink, ReceivedMessage, SmtpReply } from '../hooks.js';
import { BufferedData } from '../message-data.js';
import { receivedHeader } from '../received.js';
import type { SmtpSession, Transaction } from '../session.js';
import { settle } from './util.js';

function newReader(s: SmtpSession, dot: boolean): BodyReader {
  return new BodyReader({
    maxSize: s.opts.maxMessageSize,
    maxLineLength: s.opts.maxLineLength,
    maxReceived: s.opts.maxReceived,
    dotTerminated: dot,
    binary: !dot && s.tx?.params.body === 'BINARYMIME',
  });
}

/** Opens the transaction's sink and writes our Received: header into it; false if that failed. */
function openSink(s: SmtpSession, tx: Transaction): boolean {
  const header = Buffer.from(
    receivedHeader({
      hostname: s.opts.hostname,
      client: s.client,
      esmtp: s.esmtp,
      smtputf8: tx.params.smtputf8 === true,
      id: tx.id,
      ...(tx.recipients.length === 1 ? { recipient: (tx.recipients[0] as { address: string }).address } : {}),
      date: s.opts.clock.now(),
    }),
    'utf8',
  );
  let sink: MessageSink;
  try {
    sink = s.hooks.openData ? s.hooks.openData(tx.id, s) : new BufferedData();
  } catch (e) {
    s.opts.logger?.warn({ id: tx.id, err: e }, 'could not open the message data');
    return false;
  }
  sink.write(header);
  tx.sink = sink;
  tx.received = header;
  return true;
}

export function data(s: SmtpSession, args: string): void | Promise<void> {
  const tx = s.tx;
  if (args.length > 0) {
    s.badCommand(501, '5.5.4', 'Syntax: DATA');
    return;
  }
  if (tx === null || tx.recipients.length === 0) {
    s.reply(554, '5.5.1', 'No valid recipients');
    return;
  }
  if (tx.params.body === 'BINARYMIME') {
    s.badCommand(503, '5.5.1', 'BODY=BINARYMIME requires BDAT');
    return;
  }
  const start = (): void => {
    if (!openSink(s, tx)) {
      s.resetTransaction();
      s.reply(451, '4.3.0', 'Local error in processing');
      return;
    }
    tx.body = newReader(s, true);
    s.mode = 'data';
    s.reply(354, undefined, 'End data with <CR><LF>.<CR><LF>');
  };
  const hook = s.hooks.checkData;
  if (hook === undefined) return start();
  return settle(hook(s), (refusal) => {
    if (refusal === null) return start();
    s.resetTransaction();
    s.refuse(refusal);
  });
}

const BDAT_ARGS = /^(\d{1,15})( +LAST)?$/i;

export function bdat(s: SmtpSession, args: string): void | Promise<void> {
  const m = BDAT_ARGS.exec(args);
  if (m === null) {
    // Without a size we cannot skip the chunk; the client's bytes will be read as commands.
    s.badCommand(501, '5.5.4', 'Syntax: BDAT chunk-size [LAST]');
    return;
  }
  const size = Number(m[1]);
  s.bdatRemaining = size;
  s.bdatSize = size;
  s.bdatLast = m[2] !== undefined;
  s.bdatRefusal = null;
  s.bdatAbort = false;
  const tx = s.tx;
  if (s.phase === 'init') s.bdatRefusal = { code: 503, enhanced: '5.5.1', text: 'Send HELO/EHLO first' };
  else if (tx === null && s.bdatFailed !== null) s.bdatRefusal = s.bdatFailed;
  else if (tx === null) s.bdatRefusal = { code: 503, enhanced: '5.5.1', text: 'Need MAIL before BDAT' };
  else if (tx.recipients.length === 0)
    s.bdatRefusal = { code: 554, enhanced: '5.5.1', text: 'No valid recipients' };
  else if (tx.body === undefined && s.hooks.checkData !== undefined) {
    // The first chunk of a transaction: the filters' DATA stage decides before it is read (the
    // session is busy meanwhile, so the chunk's bytes wait in the input buffer).
    return settle(s.hooks.checkData(s), (refusal) => {
      if (refusal !== null) {
        s.bdatRefusal = refusal;
        s.bdatAbort = true;
      } else if (!openSink(s, tx)) {
        s.bdatRefusal = { code: 451, enhanced: '4.3.0', text: 'Local error in processing' };
        s.bdatAbort = true;
      } else {
        tx.body = newReader(s, false);
        s.phase = 'bdat';
      }
      return readChunk(s, size);
    });
  } else if (tx.body === undefined && !openSink(s, tx)) {
    s.bdatRefusal = { code: 451, enhanced: '4.3.0', text: 'Local error in processing' };
    s.bdatAbort = true;
  } else {
    if (tx.body === undefined) tx.body = newReader(s, false);
    s.phase = 'bdat';
  }
  return readChunk(s, size);
}

function readChunk(s: SmtpSession, size: number): void | Promise<void> {
  s.mode = 'bdat';
  if (size === 0) {
    s.mode = 'command';
    return finishBdat(s);
  }
}

/** The transaction failed at this chunk: the client's further chunks up to LAST get `r` too. */
function failChunk(s: SmtpSession, r: SmtpReply): void {
  s.resetTransaction();
  s.refuse(r);
  if (!s.bdatLast) s.bdatFailed = r;
}

export function finishBdat(s: SmtpSession): void | Promise<void> {
  const refusal = s.bdatRefusal;
  if (refusal !== null) {
    s.bdatRefusal = null;
    if (s.bdatAbort) {
      // A filter refused the message: its reply, not a protocol error.
      s.bdatAbort = false;
      failChunk(s, refusal);
      return;
    }
    if (s.tx === null && s.bdatFailed !== null) {
      // A chunk pipelined after the failed one: discarded, answered alike, not a bad command
      // (an empty one carries nothing: junk, so that a loop of them cannot hold the line).
      s.sendReply(refusal);
      if (s.bdatLast) s.bdatFailed = null;
      else if (s.bdatSize === 0) s.junk();
      return;
    }
    if (s.tx !== null) {
      // No valid recipients (554, as DATA gets it, not counted); the transaction stays open.
      s.sendReply(refusal);
      if (!s.bdatLast && s.bdatSize === 0) s.junk();
      return;
    }
    s.badCommand(refusal.code, refusal.enhanced ?? '5.5.1', String(refusal.text));
    // BDAT without MAIL (the MAIL may have been refused): the chunks after it up to LAST too.
    if (s.phase !== 'init' && !s.bdatLast && s.mode !== 'closed') s.bdatFailed = refusal;
    return;
  }
  const body = s.tx?.body;
  if (body === undefined) return;
  if (s.bdatLast) body.end();
  if (body.error !== null) {
    failChunk(s, bodyErrorReply(body.error));
    return;
  }
  if (!s.bdatLast) {
    s.reply(250, '2.0.0', `${body.size} octets received`);
    return;
  }
  return finishMessage(s);
}

export function finishData(s: SmtpSession): void | Promise<void> {
  const body = s.tx?.body;
  if (body === undefined) return;
  if (body.error !== null) {
    s.sendReply(bodyErrorReply(body.error));
    s.resetTransaction();
    return;
  }
  return finishMessage(s);
}

function finishMessage(s: SmtpSession): Promise<void> {
  const tx = s.tx;
  const body = tx?.body;
  const sink = tx?.sink;
  if (tx === null || body === undefined || sink === undefined) return Promise.resolve();
  const now = s.opts.clock.now();
  const client = { ...s.client };
  const params: ReceivedMessage['params'] = {};
  const p = tx.params;
  if (p.ret !== undefined) params.ret = p.ret;
  if (p.envid !== undefined) params.envid = p.envid;
  if (p.body !== undefined) params.body = p.body;
  if (p.smtputf8) params.smtputf8 = true;
  if (p.size !== undefined) params.size = p.size;
  const msg: ReceivedMessage = {
    id: tx.id,
    sender: tx.sender,
    recipients: tx.recipients,
    params,
    data: sink,
    size: sink.size,
    client,
    receivedAt: now,
  };
  if (tx.received !== undefined) msg.received = tx.received;
  delete tx.sink; // accept() owns it now
  s.completeTransaction();
  return s.hooks.accept(msg, s).then(
    ({ queueId }) => {
      s.reply(250, '2.0.0', `Ok: queued as ${queueId}`);
      s.junkCommands = 0;
      s.opts.logger?.debug({ id: msg.id, queueId, size: msg.size, rcpts: msg.recipients.length }, 'accepted');
    },
    (e: unknown) => {
      sink.abort();
      const st = smtpStatusOf(e);
      const text = isMtaError(e) && e.smtp ? (e.smtp.text ?? e.message) : 'Local error in processing';
      s.refuse({ code: st.code, enhanced: st.enhanced, text });
      s.opts.logger?.warn({ id: msg.id, err: e }, 'accept failed');
    },
  );
}
