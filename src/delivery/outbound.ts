// The outbound transaction, the one way a queued message goes out over SMTP or LMTP: relaying
// (engine.ts) and the ATRN turnaround (odmr/atrn-delivery.ts) both call sendTransaction. It maps
// what the queue stores (DSN parameters as received) to what goes on the wire
// (outboundTransaction), sends it, splits off the recipients a peer refused with 452 "too many
// recipients" into further transactions on the same connection, and turns each recipient's
// result — or the error that ended the connection — into its outcome, `relayed` (or, for LMTP,
// `final`) flag included.
// Invariant: every recipient it is given gets exactly one outcome; an error never escapes.
import { errorText } from '../errors.js';
import type { DeliveryJob, EnvelopeInfo, RcptOutcome, RecipientInfo } from '../queue/index.js';
import type { OutboundRecipient, OutboundTransaction, SmtpClient } from '../smtp/client/index.js';
import { withoutPaths } from './public-text.js';

/** Messages larger than this are read from the queue piece by piece while they are sent. */
export const STREAM_ABOVE = 1024 * 1024;

/** Message bytes for one transaction or Maildir file: in memory, or a stream made per use. */
export type MessageBytes = readonly Buffer[] | AsyncIterable<Buffer>;

/**
 * How a job's data is sent: a small message is read once (usually still in memory from its
 * accept) and reused; a large one is streamed from the log again for every use, so delivery
 * never holds it whole. `size` is the data's length.
 */
export async function messageData(job: DeliveryJob): Promise<{ size: number; open(): MessageBytes }> {
  const size = job.envelope.info.size;
  if (size > STREAM_ABOVE) return { size, open: () => job.stream() };
  const parts = await job.data();
  let n = 0;
  for (const p of parts) n += p.length;
  return { size: n, open: () => parts };
}

export function outboundTransaction(
  info: EnvelopeInfo,
  rcpts: readonly RecipientInfo[],
  data: MessageBytes,
  size: number,
): OutboundTransaction {
  const recipients = rcpts.map((ri) => {
    const o: OutboundRecipient = { address: ri.address };
    if (ri.notify) o.notify = ri.notify as NonNullable<OutboundRecipient['notify']>;
    if (ri.orcpt) o.orcpt = ri.orcpt;
    return o;
  });
  const tx: OutboundTransaction = { sender: info.sender, recipients, size, data };
  if (info.ret) tx.ret = info.ret;
  if (info.envid !== undefined) tx.envid = info.envid;
  if (info.smtputf8) tx.smtputf8 = true;
  if (info.body === '8BITMIME') tx.body8bit = true;
  if (info.body === 'BINARYMIME') tx.binary = true;
  return tx;
}

/** A recipient's outcome without its index (the caller knows whose it is: same order as given). */
export type Outcome = Omit<RcptOutcome, 'rcpt'>;

export interface TransactionResult {
  /** One outcome per recipient given, in the same order. */
  outcomes: Outcome[];
  /** Whether the connection may carry another message. */
  reusable: boolean;
  /** Transactions sent (more than one when the peer limits recipients). */
  transactions: number;
  /** The session was over before the peer took any of it (SendResult.stale): every recipient
   *  is deferred, and a new connection may carry the message at once. */
  stale?: true;
}

/**
 * Sends `job`'s message to `rcpts` (recipients of `job`'s message: of this piece or, for ATRN, of
 * its other pieces too) on `client`. `host` names the peer in the outcomes; `final` says the
 * peer delivers (LMTP), so a success is never "relayed". A success is "relayed" when the peer
 * does not offer DSN: it then will not report success itself (RFC 3461 §5.2.2).
 */
export async function sendTransaction(
  client: SmtpClient,
  job: DeliveryJob,
  rcpts: readonly RecipientInfo[],
  o: { host?: string; final?: boolean; onDataSent?: () => void } = {},
): Promise<TransactionResult> {
  const outcomes: Array<Outcome | undefined> = rcpts.map(() => undefined);
  const withHost = (x: Outcome): Outcome => (o.host === undefined ? x : { ...x, host: o.host });
  const rest = (x: Outcome): TransactionResult['outcomes'] => outcomes.map((y) => y ?? withHost(x));
  let data: Awaited<ReturnType<typeof messageData>>;
  try {
    // A large message is streamed from the queue while it is sent, never held whole.
    data = await messageData(job);
  } catch (e) {
    const text = withoutPaths(errorText(e));
    return {
      outcomes: rest({ status: 'deferred', code: 451, enhanced: '4.3.0', text }),
      reusable: true,
      transactions: 0,
    };
  }
  let todo = rcpts.map((_, i) => i);
  let transactions = 0;
  let reusable = false;
  let stale = false;
  try {
    while (todo.length > 0) {
      const tx = outboundTransaction(
        job.envelope.info,
        todo.map((i) => rcpts[i]!),
        data.open(),
        data.size,
      );
      // The session may be handed on before the final reply only by the last transaction this
      // job sends on it, which is the one that got no 452 (transaction.ts calls it only then).
      const res = await client.sendMessage(tx, o.onDataSent ? { onDataSent: o.onDataSent } : {});
      transactions++;
      if (res.stale && transactions === 1) stale = true;
      reusable = res.reusable;
      const retry: number[] = [];
      for (const rr of res.recipients) {
        const i = todo[rr.index]!;
        if (rr.tooManyRecipients && reusable && rr.index > 0) {
          retry.push(i);
          continue;
        }
        const x: Outcome = { status: rr.status, code: rr.code, enhanced: rr.enhanced, text: rr.text };
        if (rr.status === 'delivered') {
          if (o.final) x.final = true;
          else if (!client.extensions.dsn) x.relayed = true;
        }
        outcomes[i] = withHost(x);
      }
      // Refused all over again: the peer will take no more now; they wait for the next attempt.
      if (retry.length === todo.length) break;
      todo = retry;
    }
    return {
      outcomes: rest({ status: 'deferred', code: 452, enhanced: '4.5.3', text: 'too many recipients' }),
      reusable,
      transactions,
      ...(stale && { stale: true }),
    };
  } catch (e) {
    // The connection failed mid-way: what was not answered is tried again later.
    const text = withoutPaths(errorText(e));
    return {
      outcomes: rest({ status: 'deferred', code: 451, enhanced: '4.4.2', text }),
      reusable: false,
      transactions,
    };
  }
}
