// Injecting mail in tests the way a client does: a small RFC 5322 message and sendMail, which
// sends it over SMTP with logmta's own client and fails unless every recipient was accepted.
// Invariant: the connection is closed on every path (unless the caller passed its own client).
import { type OutboundRecipient, type SendResult, SmtpClient } from '../../src/smtp/client/index.js';

export interface MailSpec {
  from: string;
  to: Array<string | OutboundRecipient>;
  subject?: string;
  body?: string;
  ret?: 'FULL' | 'HDRS';
  envid?: string;
}

/** A small RFC 5322 message with CRLF line ends. */
export function makeMessage(spec: { from: string; to: string; subject?: string; body?: string }): Buffer {
  const body = spec.body ?? 'Hello.\r\n';
  return Buffer.from(
    `From: <${spec.from}>\r\nTo: <${spec.to}>\r\nSubject: ${spec.subject ?? 'test'}\r\n` +
      `Message-ID: <${Math.random().toString(36).slice(2)}@test>\r\n\r\n${body}`,
  );
}

/** Sends one message to 127.0.0.1:port with the real client; rejects unless every RCPT got 250. */
export async function sendMail(port: number, spec: MailSpec, client?: SmtpClient): Promise<SendResult> {
  const c =
    client ?? (await SmtpClient.connect('127.0.0.1', port, { name: 'injector.test', tls: { mode: 'none' } }));
  try {
    const recipients = spec.to.map((r) => (typeof r === 'string' ? { address: r } : r));
    const first = recipients[0]?.address ?? '';
    const data = makeMessage({
      from: spec.from,
      to: first,
      ...(spec.subject !== undefined && { subject: spec.subject }),
      ...(spec.body !== undefined && { body: spec.body }),
    });
    const tx: Parameters<SmtpClient['sendMessage']>[0] = {
      sender: spec.from,
      recipients,
      size: data.length,
      data: [data],
    };
    if (spec.ret) tx.ret = spec.ret;
    if (spec.envid !== undefined) tx.envid = spec.envid;
    const res = await c.sendMessage(tx);
    const bad = res.recipients.filter((r) => r.status !== 'delivered');
    if (bad.length > 0)
      throw new Error(`injection refused: ${bad.map((b) => `${b.code} ${b.text}`).join('; ')}`);
    return res;
  } finally {
    if (!client) await c.quit();
  }
}
