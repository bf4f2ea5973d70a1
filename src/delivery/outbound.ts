// Turns a queued envelope into the SMTP client's transaction: the one mapping from what the
// queue stores (DSN parameters as received) to what goes on the wire. Used by normal delivery
// and by the ATRN turnaround, so both pass on exactly the same parameters. Pure.
import type { EnvelopeInfo, RecipientInfo } from '../queue/types.js';
import type { OutboundRecipient, OutboundTransaction } from '../smtp/client/index.js';

export function outboundTransaction(
  info: EnvelopeInfo,
  rcpts: readonly RecipientInfo[],
  data: Buffer,
): OutboundTransaction {
  const recipients = rcpts.map((ri) => {
    const o: OutboundRecipient = { address: ri.address };
    if (ri.notify) o.notify = ri.notify as NonNullable<OutboundRecipient['notify']>;
    if (ri.orcpt) o.orcpt = ri.orcpt;
    return o;
  });
  const tx: OutboundTransaction = { sender: info.sender, recipients, size: data.length, data: [data] };
  if (info.ret) tx.ret = info.ret;
  if (info.envid !== undefined) tx.envid = info.envid;
  if (info.smtputf8) tx.smtputf8 = true;
  if (info.body === '8BITMIME') tx.body8bit = true;
  if (info.body === 'BINARYMIME') tx.binary = true;
  return tx;
}
