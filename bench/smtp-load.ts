// The SMTP load the in-process benchmarks (auth, milter, cluster) drive through `logmta serve`:
// their command-line numbers, the test message, and N client sessions sending it in a loop.
// Invariant: every message counted got 354 to its DATA and 250 to its final dot; a session sends
// `perSession` messages (Infinity: all of them) before it quits and a new one connects.
// Fails: throws on the first unexpected reply, naming it.
import net from 'node:net';
import { ReplyReader } from './etrn-smtp.js';

/** `--name N` from the command line, else `def`. */
export function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
}

/** A plain message of about `size` bytes from `from` to `to`, in 78-character lines. */
export function benchMessage(from: string, to: string, size: number, contentType = true): Buffer {
  const line = `${'x'.repeat(76)}\r\n`;
  const body = line.repeat(Math.max(1, Math.floor(size / line.length)));
  return Buffer.from(
    `From: <${from}>\r\nTo: <${to}>\r\nSubject: bench\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n` +
      `Message-ID: <bench@${from.split('@')[1]}>\r\nMIME-Version: 1.0\r\n` +
      `${contentType ? 'Content-Type: text/plain\r\n' : ''}\r\n${body}`,
    'latin1',
  );
}

export interface LoadOptions {
  port: number;
  sessions: number;
  secs: number;
  from: string;
  to: string;
  data: Buffer;
  /** Messages per session before it reconnects (default: one session for the whole run). */
  perSession?: number;
  localAddress?: string;
}

/** `sessions` clients sending `data` in a loop for `secs`; returns the messages accepted. */
export async function smtpLoad(o: LoadOptions): Promise<number> {
  const end = performance.now() + o.secs * 1000;
  const perSession = o.perSession ?? Number.POSITIVE_INFINITY;
  let done = 0;
  const payload = Buffer.concat([o.data, Buffer.from('.\r\n')]);
  const envelope = `MAIL FROM:<${o.from}>\r\nRCPT TO:<${o.to}>\r\nDATA\r\n`;
  await Promise.all(
    Array.from({ length: o.sessions }, async () => {
      while (performance.now() < end) {
        const s = await new Promise<net.Socket>((res, rej) => {
          const c = net.connect({ port: o.port, host: '127.0.0.1', localAddress: o.localAddress }, () =>
            res(c),
          );
          c.once('error', rej);
        });
        const r = new ReplyReader(s);
        await r.read();
        await r.ask('EHLO bench.sender.test');
        for (let n = 0; n < perSession && performance.now() < end; n++) {
          s.write(envelope);
          const replies = [await r.read(), await r.read(), await r.read()];
          if (!replies[2]?.startsWith('354')) throw new Error(`unexpected: ${replies.join(' | ')}`);
          s.write(payload);
          const fin = await r.read();
          if (!fin.startsWith('250')) throw new Error(`refused: ${fin}`);
          done++;
        }
        s.end('QUIT\r\n');
      }
    }),
  );
  return done;
}
