// Turns a queued envelope into the SMTP client's transaction: the one mapping from what the
// queue stores (DSN parameters as received) to what goes on the wire. Used by normal delivery
// and by the ATRN turnaround, so both pass on exactly the same parameters. Pure, but for
// messageData, which decides whether a message is sent from memory or streamed from the queue.
import type { DeliveryJob, EnvelopeInfo, RecipientInfo } from '../queue/types.js';
import type { OutboundRecipient, OutboundTransaction } from '../smtp/client/index.js';

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
