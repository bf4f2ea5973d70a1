// Helpers shared by the SMTP client's loopback tests (never shipped): a sample message, a
// transaction builder and a sink-per-test wrapper that closes every client it opened.

import type { OutboundTransaction, SmtpClientOptions } from '../../src/smtp/client/options.js';
import { SmtpClient } from '../../src/smtp/client/session.js';
import { type SinkOptions, SmtpSink } from './sink.js';

export const BODY = 'From: a@example.org\r\nSubject: test\r\n\r\nHello.\r\n';

export function makeTx(
  recipients: string[],
  body = BODY,
  extra: Partial<OutboundTransaction> = {},
): OutboundTransaction {
  const data = [Buffer.from(body)];
  return {
    sender: 'a@example.org',
    recipients: recipients.map((address) => ({ address })),
    size: data[0]!.length,
    data,
    ...extra,
  };
}

export async function withSink(
  opts: SinkOptions,
  fn: (sink: SmtpSink, connect: (o?: Partial<SmtpClientOptions>) => Promise<SmtpClient>) => Promise<void>,
): Promise<void> {
  const sink = await SmtpSink.start(opts);
  const clients: SmtpClient[] = [];
  const connect = async (o: Partial<SmtpClientOptions> = {}) => {
    const c = await SmtpClient.connect(sink.host, sink.port, { name: 'client.test', ...o });
    clients.push(c);
    return c;
  };
  try {
    await fn(sink, connect);
  } finally {
    for (const c of clients) c.close();
    await sink.close();
  }
}
