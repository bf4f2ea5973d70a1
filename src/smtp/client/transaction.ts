// One mail transaction on an established session: local checks (address syntax, SMTPUTF8 from
// the envelope and the header bytes, 8BITMIME/BINARYMIME with the 7-bit conversion, SIZE), [RSET] MAIL RCPT... DATA pipelined when the peer offers PIPELINING (RFC 2920), then the
// data dot-stuffed (DATA) or raw (BDAT, RFC 3030), and one result per recipient.
// Invariants: a recipient is "delivered" only on a 2xx to the end of data; every reply of a
// pipelined group is read and checked; a failed MAIL or end of data applies to every recipient
// still pending; any network error, timeout or protocol error leaves every recipient without a
// final answer "deferred" (the message may then have arrived — duplicates, never loss) and makes
// the connection unusable. Nothing here rejects: failures are results.

import { errorText, MtaError } from '../../errors.js';
import type { SmtpConnection } from './connection.js';
import { DotStuffer, dotStuff } from './dotstuff.js';
import { inspectContent, toSevenBit } from './content.js';
import type { Extensions } from './extensions.js';
import type { OutboundTransaction, RecipientResult, SendResult, SmtpTimeouts } from './options.js';
import { isAscii, isSafeAddress, mailFromLine, rcptToLine } from './params.js';
import type { Reply } from './reply.js';

export interface TransactionState {
  /** Messages completed (end-of-data reply received) on this connection. */
  messages: number;
  /** The previous transaction was aborted: the peer may still hold envelope state. */
  dirty: boolean;
  busy: boolean;
}

export interface TransactionOptions {
  timeouts: SmtpTimeouts;
  chunking: boolean;
  rsetBeforeReuse: boolean;
  /** LMTP (RFC 2033 4.2): after the data, one reply per accepted recipient, in RCPT order. */
  lmtp?: boolean;
  /**
   * Called once the end of data is written and the session may carry the next transaction while
   * this one waits for its final reply (RFC 2920: the next MAIL may follow the end of data in
   * the same group). Only with PIPELINING, DATA and data in memory, and when no recipient must
   * be retried on this connection (452 too many recipients); otherwise never called.
   */
  onDataSent?: () => void;
}

const noop = (): void => {};

function statusOf(code: number): RecipientResult['status'] {
  if (code >= 200 && code < 300) return 'delivered';
  if (code >= 500 && code < 600) return 'failed';
  return 'deferred';
}

function fromReply(index: number, r: Reply, stage: RecipientResult['stage']): RecipientResult {
  const res: RecipientResult = {
    index,
    code: r.code,
    enhanced: r.enhanced ?? `${Math.floor(r.code / 100)}.0.0`,
    text: r.text,
    status: statusOf(r.code),
    remote: true,
    stage,
  };
  // 452 means "too many recipients" unless the enhanced code says otherwise (4.2.2 mailbox full...).
  if (stage === 'rcpt' && r.code === 452 && (r.enhanced === undefined || r.enhanced === '4.5.3')) {
    res.tooManyRecipients = true;
  }
  return res;
}

function local(index: number, code: number, enhanced: string, text: string, stage: RecipientResult['stage']) {
  return {
    index,
    code,
    enhanced,
    text,
    status: statusOf(code),
    remote: false,
    stage,
  } satisfies RecipientResult;
}

/** Unexpected reply class for a step: the peer and we are out of step. */
class OutOfStep extends MtaError {
  constructor(what: string, r: Reply) {
    super('SMTP_OUT_OF_STEP', 'transient', `unexpected reply to ${what}: ${r.code} ${r.text}`, {
      smtp: { code: 451, enhanced: '4.5.0' },
    });
  }
}

export async function sendTransaction(
  conn: SmtpConnection,
  ext: Extensions,
  tx: OutboundTransaction,
  state: TransactionState,
  o: TransactionOptions,
): Promise<SendResult> {
  const n = tx.recipients.length;
  const results: (RecipientResult | undefined)[] = new Array(n);
  let stale = false;
  const done = (reusable: boolean): SendResult => ({
    recipients: results.map((r, i) => r ?? local(i, 451, '4.3.0', 'no result', 'local')),
    reusable: reusable && conn.alive,
    ...(stale && { stale: true }),
  });
  const all = (make: (i: number) => RecipientResult) => {
    for (let i = 0; i < n; i++) if (results[i] === undefined) results[i] = make(i);
  };

  if (!conn.alive) {
    stale = true;
    all((i) => local(i, 451, '4.4.2', conn.error?.message ?? 'connection closed', 'connection'));
    return done(false);
  }
  if (!isSafeAddress(tx.sender)) {
    all((i) => local(i, 553, '5.1.7', 'bad sender address syntax', 'local'));
    return done(true);
  }
  // What the content needs is decided from the message itself, not only its envelope: UTF-8
  // header fields of a message received with SMTPUTF8 need the extension too (RFC 6531 §3.2:
  // never sent raw to a hop without it); 8-bit bodies need 8BITMIME or the 7-bit form (RFC 6152).
  // Only a hop that lacks one of the two needs the message looked at (nearly every hop has both).
  const inspect = !ext.eightBitMime || (tx.smtputf8 === true && !ext.smtputf8);
  // A streamed (large) message is then read whole, so that it can be inspected and converted as
  // an in-memory one is.
  if (inspect && !Array.isArray(tx.data)) {
    const whole: Buffer[] = [];
    try {
      for await (const c of tx.data as AsyncIterable<Buffer>) whole.push(c);
    } catch (e) {
      all((i) => local(i, 451, '4.3.0', `could not read the message: ${errorText(e)}`, 'local'));
      return done(true);
    }
    tx = { ...tx, data: whole };
  }
  const facts = inspect && Array.isArray(tx.data) ? inspectContent(tx.data as readonly Buffer[]) : undefined;
  const addrUtf8 = !isAscii(tx.sender) || tx.recipients.some((r) => !isAscii(r.address));
  // A streamed message cannot be inspected here: its SMTPUTF8 flag is taken at its word.
  const headerUtf8 = tx.smtputf8 === true && (facts === undefined || facts.header8bit);
  const needsUtf8 = addrUtf8 || headerUtf8;
  if (needsUtf8 && !ext.smtputf8) {
    const what = addrUtf8 ? 'addresses' : 'header fields';
    all((i) =>
      local(
        i,
        553,
        '5.6.7',
        `SMTPUTF8 is required (UTF-8 ${what}), but was not offered by host ${conn.remote}`,
        'local',
      ),
    );
    return done(true);
  }
  let data = tx.data;
  let size = tx.size;
  let body8bit = tx.body8bit === true || facts?.body8bit === true;
  if (tx.binary === true && !(ext.binaryMime && ext.chunking && o.chunking)) {
    all((i) =>
      local(
        i,
        554,
        '5.6.3',
        `binary message (BODY=BINARYMIME), but host ${conn.remote} does not offer BINARYMIME with CHUNKING`,
        'local',
      ),
    );
    return done(true);
  }
  // Header bytes sent under SMTPUTF8 are that extension's; otherwise 8-bit anywhere is 8BITMIME's.
  const eight = body8bit || (facts?.header8bit === true && !needsUtf8);
  if (tx.binary !== true && eight && !ext.eightBitMime) {
    const seven = facts ? toSevenBit(facts, { utf8Headers: needsUtf8 }) : undefined;
    if (!seven?.ok) {
      const why = seven ? seven.why : 'the message is streamed';
      all((i) =>
        local(
          i,
          554,
          '5.6.3',
          `8-bit message cannot be converted to 7 bits (${why}), and host ${conn.remote} does not offer 8BITMIME`,
          'local',
        ),
      );
      return done(true);
    }
    data = seven.data;
    size = seven.size;
    body8bit = false;
  }
  if (ext.size !== undefined && ext.size > 0 && size > ext.size) {
    all((i) =>
      local(
        i,
        552,
        '5.3.4',
        `message size ${size} exceeds size limit ${ext.size} of server ${conn.remote}`,
        'local',
      ),
    );
    return done(true);
  }
  const todo: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = tx.recipients[i];
    if (r === undefined || !isSafeAddress(r.address)) {
      results[i] = local(i, 501, '5.1.3', 'bad recipient address syntax', 'local');
    } else todo.push(i);
  }
  if (todo.length === 0) return done(true);

  const t = o.timeouts;
  const pipelining = ext.pipelining;
  const bdat = o.chunking && ext.chunking;
  const needRset = state.dirty || (o.rsetBeforeReuse && state.messages > 0);
  const mailLine = mailFromLine(
    {
      sender: tx.sender,
      size,
      body8bit,
      ...(tx.binary === true && { binary: true }),
      // Only when the content or the envelope needs it: an ASCII message that was received with
      // SMTPUTF8 goes to any hop, and says SMTPUTF8 to those that offer it.
      smtputf8: needsUtf8 || tx.smtputf8 === true,
      ...(tx.ret !== undefined && { ret: tx.ret }),
      ...(tx.envid !== undefined && { envid: tx.envid }),
    },
    ext,
  );
  const rcptLine = (i: number) => rcptToLine(tx.recipients[i] ?? { address: '' }, ext);

  state.busy = true;
  state.dirty = true;
  let stage = 'sending MAIL FROM';
  // Set once the session was handed on (onDataSent): from then on `state` is the next
  // transaction's, and this one only waits for its reply.
  let handedOn = false;
  try {
    // Phase 1: the envelope. With PIPELINING every command goes out in one corked write and the
    // handler queue pairs replies with commands; without it, each waits for its reply.
    let rsetP: Promise<Reply> | undefined;
    let mailP: Promise<Reply> | undefined;
    const rcptPs: Promise<Reply>[] = [];
    let dataP: Promise<Reply> | undefined;
    if (pipelining) {
      const s = conn.socket;
      s.cork();
      if (needRset) rsetP = conn.send('RSET\r\n', t.command, 'RSET reply');
      mailP = conn.send(mailLine, t.mail, 'MAIL reply');
      for (const i of todo) rcptPs.push(conn.send(rcptLine(i), t.rcpt, 'RCPT reply'));
      if (!bdat) dataP = conn.send('DATA\r\n', t.dataStart, 'DATA reply');
      s.uncork();
      // Every promise is awaited below, but a rejection may come before its turn.
      for (const p of [rsetP, mailP, dataP, ...rcptPs]) p?.catch(noop);
    }
    if (needRset) {
      stage = 'sending RSET';
      const r = await (rsetP ?? conn.send('RSET\r\n', t.command, 'RSET reply'));
      if (r.code !== 250) throw new OutOfStep('RSET', r);
    }
    stage = 'sending MAIL FROM';
    const mail = await (mailP ?? conn.send(mailLine, t.mail, 'MAIL reply'));
    if (mail.code >= 300 && mail.code < 400) throw new OutOfStep('MAIL FROM', mail);
    const accepted: number[] = [];
    if (mail.code < 300) {
      stage = 'sending RCPT TO';
      for (let k = 0; k < todo.length; k++) {
        const i = todo[k] ?? 0;
        const r = await (rcptPs[k] ?? conn.send(rcptLine(i), t.rcpt, 'RCPT reply'));
        if (r.code >= 300 && r.code < 400) throw new OutOfStep('RCPT TO', r);
        if (r.code < 300) accepted.push(i);
        else results[i] = fromReply(i, r, 'rcpt');
      }
    } else {
      // 421: the peer is closing the session (RFC 5321 §3.8), not refusing this message.
      stale = mail.code === 421;
      for (const i of todo) results[i] = fromReply(i, mail, 'mail');
      // Pipelined RCPT replies (503 by now) still have to be read to stay in step.
      for (const p of rcptPs) await p;
    }
    if (accepted.length === 0) {
      if (dataP) {
        stage = 'sending DATA';
        const r = await dataP;
        // RFC 2920 §3.1: a server that says 354 anyway gets an empty message it must discard...
        // we send only the terminator, and the transaction state is dirty (RSET next time).
        if (r.code === 354) await conn.send('.\r\n', t.dataEnd, 'end of data reply');
      }
      return done(true);
    }

    // Phase 2: the data.
    let final: Reply;
    if (!bdat) {
      stage = 'sending DATA';
      const r = await (dataP ?? conn.send('DATA\r\n', t.dataStart, 'DATA reply'));
      if (r.code !== 354) {
        if (r.code < 400) throw new OutOfStep('DATA', r);
        for (const i of accepted) results[i] = fromReply(i, r, 'data');
        return done(true);
      }
      stage = 'sending message data';
      const handOn =
        o.onDataSent !== undefined &&
        pipelining &&
        Array.isArray(data) &&
        !o.lmtp &&
        !results.some((x) => x?.tooManyRecipients === true);
      if (handOn) {
        // The end of data stays in the socket's buffer until the loop's check phase, so that the
        // next transaction's envelope, if it starts now, leaves in the same write.
        const sock = conn.socket;
        sock.cork();
        await writeDotStuffed(conn, data, t);
        setImmediate(() => sock.uncork());
      } else await writeDotStuffed(conn, data, t);
      stage = 'waiting for reply to end of data';
      // Queued before the next transaction's commands, so replies pair with them in order.
      const finalP = conn.expect(t.dataEnd, 'reply to end of data');
      if (handOn) {
        finalP.catch(noop);
        // Whatever the reply, the transaction is over on the server's side once it has the end
        // of data (RFC 5321 §4.1.1.4): the next one needs no RSET for it.
        state.dirty = false;
        state.busy = false;
        handedOn = true;
        o.onDataSent!();
      }
      final = await finalP;
    } else {
      stage = 'sending message data (BDAT)';
      final = await writeBdat(conn, data, t, pipelining);
    }
    if (final.code >= 300 && final.code < 400) throw new OutOfStep('end of data', final);
    if (o.lmtp) {
      // Each recipient's own outcome; a reply still missing when the connection fails leaves
      // that recipient (and those after it) deferred below — the server may have delivered it.
      stage = 'waiting for the per-recipient replies (LMTP)';
      let r = final;
      for (let k = 0; k < accepted.length; k++) {
        if (k > 0) r = await conn.expect(t.dataEnd, 'LMTP recipient reply');
        if (r.code >= 300 && r.code < 400) throw new OutOfStep('end of data', r);
        const i = accepted[k] as number;
        results[i] = fromReply(i, r, 'data');
      }
      // Every reply is in: the transaction is over on both sides, whatever each recipient got.
      state.messages++;
      state.dirty = false;
      return done(true);
    }
    for (const i of accepted) results[i] = fromReply(i, final, 'data');
    state.messages++;
    if (!handedOn) state.dirty = final.code >= 300;
    return done(true);
  } catch (e) {
    // Before the MAIL reply the peer has answered nothing of this transaction (no DATA went out).
    stale ||=
      (stage === 'sending RSET' || stage === 'sending MAIL FROM') && !results.some((r) => r?.remote === true);
    const why = `${stage}: ${errorText(e)}`;
    const smtp = e instanceof MtaError && e.smtp ? e.smtp : { code: 451, enhanced: '4.4.2' };
    if (conn.alive) conn.fail(e instanceof MtaError ? e : new MtaError('SMTP_CLIENT', 'transient', why));
    all((i) => local(i, smtp.code, smtp.enhanced, why, 'connection'));
    return done(false);
  } finally {
    if (!handedOn) state.busy = false;
  }
}

async function writeDotStuffed(
  conn: SmtpConnection,
  data: OutboundTransaction['data'],
  t: SmtpTimeouts,
): Promise<void> {
  if (Array.isArray(data)) {
    // Whole message in memory: one corked write of subarrays, no copy. The end-of-data deadline
    // (10 minutes) covers a peer that stops reading.
    conn.write(dotStuff(data as readonly Buffer[]));
    return;
  }
  const s = new DotStuffer();
  const out: Buffer[] = [];
  for await (const chunk of data as AsyncIterable<Buffer>) {
    s.push(chunk, out);
    const ok = conn.write(out);
    out.length = 0;
    if (!ok) await conn.drain(t.dataBlock, 'data block to be sent');
    if (!conn.alive) throw conn.error;
  }
  s.end(out);
  conn.write(out);
}

async function writeBdat(
  conn: SmtpConnection,
  data: OutboundTransaction['data'],
  t: SmtpTimeouts,
  pipelining: boolean,
): Promise<Reply> {
  if (Array.isArray(data)) {
    const chunks = data as readonly Buffer[];
    let size = 0;
    for (const c of chunks) size += c.length;
    conn.write([Buffer.from(`BDAT ${size} LAST\r\n`), ...chunks]);
    return conn.expect(t.dataEnd, 'reply to BDAT LAST');
  }
  // Streamed: one BDAT per chunk; without PIPELINING each waits for its reply.
  const pending: Promise<Reply>[] = [];
  for await (const chunk of data as AsyncIterable<Buffer>) {
    if (chunk.length === 0) continue;
    const ok = conn.write([Buffer.from(`BDAT ${chunk.length}\r\n`), chunk]);
    const p = conn.expect(t.dataBlock, 'reply to BDAT');
    if (pipelining) {
      p.catch(noop);
      pending.push(p);
      if (!ok) await conn.drain(t.dataBlock, 'data block to be sent');
    } else {
      const r = await p;
      if (r.code !== 250) return r;
    }
    if (!conn.alive) throw conn.error;
  }
  conn.write('BDAT 0 LAST\r\n');
  const last = conn.expect(t.dataEnd, 'reply to BDAT LAST');
  last.catch(noop);
  for (const p of pending) {
    const r = await p;
    if (r.code !== 250) {
      await last;
      return r;
    }
  }
  return last;
}
