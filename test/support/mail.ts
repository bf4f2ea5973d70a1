// Sending one message over SMTP in a test, the way a client does it (EHLO, MAIL, RCPT..., DATA),
// and reporting every reply code, so a test can assert at which stage a filter answered.
import { SmtpChat } from './daemon.js';

export interface SendResult {
  greeting: string;
  ehlo: string;
  mail: string;
  rcpts: string[];
  /** The reply to DATA (354 or a refusal); undefined when no recipient was accepted. */
  data?: string;
  /** The reply to the final dot; undefined when DATA was refused. */
  final?: string;
}

export interface SendOptions {
  from: string;
  to: string[];
  /** The message, lines joined by CRLF (dot-stuffed here). */
  message: string;
  helo?: string;
  /** AUTH PLAIN credentials. */
  auth?: { user: string; pass: string };
}

export async function sendMessage(port: number, o: SendOptions): Promise<SendResult> {
  const c = await SmtpChat.connect(port);
  try {
    const [greeting = ''] = await c.read(1);
    const [ehlo = ''] = await c.ask(`EHLO ${o.helo ?? 'client.test'}\r\n`);
    if (o.auth) {
      const token = Buffer.from(`\0${o.auth.user}\0${o.auth.pass}`).toString('base64');
      const [r = ''] = await c.ask(`AUTH PLAIN ${token}\r\n`);
      if (!r.startsWith('235')) throw new Error(`AUTH failed: ${r}`);
    }
    const res: SendResult = { greeting, ehlo, mail: '', rcpts: [] };
    [res.mail = ''] = await c.ask(`MAIL FROM:<${o.from}>\r\n`);
    if (!res.mail.startsWith('250')) return res;
    for (const t of o.to) res.rcpts.push((await c.ask(`RCPT TO:<${t}>\r\n`))[0] ?? '');
    if (!res.rcpts.some((r) => r.startsWith('250'))) return res;
    [res.data = ''] = await c.ask('DATA\r\n');
    if (!res.data.startsWith('354')) return res;
    const body = o.message.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
    [res.final = ''] = await c.ask(`${body}${body.endsWith('\r\n') ? '' : '\r\n'}.\r\n`);
    await c.ask('QUIT\r\n').catch(() => []);
    return res;
  } finally {
    c.close();
  }
}
