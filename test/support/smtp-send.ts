// Sends one message over a raw SMTP conversation (test/support/daemon.ts SmtpChat), from a chosen
// loopback address and optionally after AUTH PLAIN, and returns every reply — for tests that
// need to be a given kind of client (outside, in relay_networks, authenticated).
// Invariant: the data is dot-stuffed and CRLF-terminated as the protocol requires; the
// connection is closed on every path.

import { SmtpChat } from './daemon.js';

export interface RawMail {
  from: string;
  to: string[];
  /** The message (header and body), CRLF line endings. */
  data: string | Buffer;
  /** Source address, e.g. "127.0.0.2" to be a client outside relay_networks. */
  localAddress?: string;
  helo?: string;
  auth?: { user: string; password: string };
}

export interface RawResult {
  greeting: string;
  /** First line of each reply after the greeting: EHLO, [AUTH], MAIL, RCPT..., DATA, final. */
  replies: string[];
  /** The reply to the final dot (or the first refusal that stopped the transaction). */
  final: string;
}

export async function sendRaw(port: number, m: RawMail): Promise<RawResult> {
  const chat = await SmtpChat.connect(port, '127.0.0.1', m.localAddress);
  try {
    const [greeting = ''] = await chat.read(1);
    const replies: string[] = [];
    const step = async (line: string): Promise<string> => {
      const [r = ''] = await chat.ask(`${line}\r\n`);
      replies.push(r);
      return r;
    };
    await step(`EHLO ${m.helo ?? 'client.test'}`);
    if (m.auth) {
      const token = Buffer.from(`\0${m.auth.user}\0${m.auth.password}`).toString('base64');
      const r = await step(`AUTH PLAIN ${token}`);
      if (!r.startsWith('235')) return { greeting, replies, final: r };
    }
    let r = await step(`MAIL FROM:<${m.from}>`);
    if (!r.startsWith('250')) return { greeting, replies, final: r };
    let accepted = 0;
    for (const to of m.to) {
      r = await step(`RCPT TO:<${to}>`);
      if (r.startsWith('250')) accepted++;
    }
    if (accepted === 0) return { greeting, replies, final: r };
    r = await step('DATA');
    if (!r.startsWith('354')) return { greeting, replies, final: r };
    const text = Buffer.isBuffer(m.data) ? m.data.toString('latin1') : m.data;
    const body = text.endsWith('\r\n') ? text : `${text}\r\n`;
    const stuffed = body.replace(/^\./gm, '..');
    const [fin = ''] = await chat.ask(Buffer.from(`${stuffed}.\r\n`, 'latin1'));
    replies.push(fin);
    await chat.ask('QUIT\r\n').catch(() => []);
    return { greeting, replies, final: fin };
  } finally {
    chat.close();
  }
}
