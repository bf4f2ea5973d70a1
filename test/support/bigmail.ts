// Large messages for memory and streaming tests: a client that streams a generated message of
// any size over DATA (dot-stuffed) or BDAT (in chunks of a chosen size) without ever holding it
// whole, can cut the connection after a given number of bytes, and reports the SHA-256 of what
// it sent; plus helpers that find such a message again (in a Maildir file or a sink transaction)
// and check its digest, and that read a process's RSS from /proc.
// The content is deterministic per (tag, size): lines of 78 octets + CRLF, some starting with a
// dot (so DATA's dot-stuffing is exercised), starting with an `X-Big: <tag>` header. The digest
// covers the message from that header on, with CRLF line ends (`digestLf`: LF line ends, as a
// Maildir stores it), so what the MTA prepends (Received:, Return-Path:) does not count.
// Fails: rejects when the server closes early or answers out of step (unless cutting was asked).

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';

export interface BigMessage {
  /** Appears in the X-Big header; tells messages apart. */
  tag: string;
  /** Approximate size in octets (rounded up to whole lines). */
  size: number;
}

const LINE = 80;

/** Yields the message in blocks of about `block` octets (whole lines), CRLF line ends, unstuffed. */
export function* messageBlocks(m: BigMessage, block = 64 * 1024): Generator<Buffer> {
  const head = `X-Big: ${m.tag}\r\nSubject: big ${m.tag}\r\nFrom: <big@gen.test>\r\n\r\n`;
  let sent = head.length;
  yield Buffer.from(head, 'latin1');
  let line = 0;
  const perBlock = Math.max(1, Math.floor(block / LINE));
  while (sent < m.size) {
    const parts: string[] = [];
    for (let i = 0; i < perBlock && sent < m.size; i++, line++) {
      // Every 50th line starts with a dot; the rest carry the tag and line number.
      const lead = line % 50 === 7 ? '.' : '';
      const text = `${lead}${m.tag} line ${line} `;
      parts.push(text.padEnd(LINE - 2, String.fromCharCode(97 + (line % 26))), '\r\n');
      sent += LINE;
    }
    yield Buffer.from(parts.join(''), 'latin1');
  }
}

/** SHA-256 (hex) of the message as generated, CRLF line ends. */
export function digestOf(m: BigMessage): { crlf: string; lf: string; octets: number } {
  const a = createHash('sha256');
  const b = createHash('sha256');
  let octets = 0;
  for (const blk of messageBlocks(m)) {
    a.update(blk);
    b.update(blk.toString('latin1').replaceAll('\r\n', '\n'));
    octets += blk.length;
  }
  return { crlf: a.digest('hex'), lf: b.digest('hex'), octets };
}

/** SHA-256 (hex) of `text` from its `X-Big: <tag>` header to the end, or undefined without one. */
export function digestFromHeader(text: Buffer, tag: string): string | undefined {
  const at = text.indexOf(`X-Big: ${tag}`);
  if (at < 0) return undefined;
  return createHash('sha256').update(text.subarray(at)).digest('hex');
}

/** The tag of the X-Big header in `text`, if any. */
export function tagOf(text: Buffer): string | undefined {
  const at = text.indexOf('X-Big: ');
  if (at < 0) return undefined;
  const end = text.indexOf('\n', at);
  return text
    .subarray(at + 7, end < 0 ? undefined : end)
    .toString('latin1')
    .replace(/\r$/, '');
}

export interface SendOptions {
  port: number;
  from?: string;
  to: string[];
  mode: 'data' | 'bdat';
  /** BDAT chunk size (default 64 KiB). */
  chunk?: number;
  /** Destroy the connection after this many message octets have been written. */
  cutAfter?: number;
  /** Awaited when cutAfter is reached, before the connection is destroyed. */
  beforeCut?: () => Promise<void>;
  /** Reply timeout in ms (default 120 s). */
  timeoutMs?: number;
}

export interface SendResult {
  /** The final reply line ("250 2.0.0 Ok: queued as ..."), or "cut" when the connection was cut. */
  reply: string;
  /** The queue id from the 250, if any. */
  id?: string;
  /** Every reply line received, in order (first lines only). */
  replies: string[];
}

/** A small reply reader over a raw socket: whole replies in order, their first lines. */
class Replies {
  private buf = '';
  private cur: string | undefined;
  private readonly ready: string[] = [];
  private waiters: Array<() => void> = [];
  closed = false;

  constructor(readonly sock: net.Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (let i = this.buf.indexOf('\r\n'); i >= 0; i = this.buf.indexOf('\r\n')) {
        const l = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        this.cur ??= l;
        if (l[3] !== '-') {
          this.ready.push(this.cur);
          this.cur = undefined;
        }
      }
      this.wake();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  async next(timeoutMs: number): Promise<string> {
    const end = Date.now() + timeoutMs;
    while (this.ready.length === 0) {
      if (this.closed) throw new Error('connection closed by the server');
      const left = end - Date.now();
      if (left <= 0) throw new Error('timed out waiting for a reply');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.ready.shift()!;
  }
}

function drain(sock: net.Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = () => reject(new Error('connection closed while sending'));
    sock.once('close', onClose);
    sock.once('drain', () => {
      sock.off('close', onClose);
      resolve();
    });
  });
}

/** Dot-stuffs one block of whole lines (each line starting a block is at a line start). */
function stuff(b: Buffer): Buffer {
  if (b.indexOf('\n.') < 0 && b[0] !== 46) return b;
  return Buffer.from(b.toString('latin1').replace(/^\./gm, '..'), 'latin1');
}

/** Sends one large message; see SendOptions. */
export async function sendBig(m: BigMessage, o: SendOptions): Promise<SendResult> {
  const sock = net.connect({ port: o.port, host: '127.0.0.1' });
  const r = new Replies(sock);
  const t = o.timeoutMs ?? 120_000;
  const replies: string[] = [];
  const expect = async (code: string): Promise<string> => {
    const l = await r.next(t);
    replies.push(l);
    if (!l.startsWith(code)) throw new Error(`expected ${code}, got: ${l} (after ${replies.join(' | ')})`);
    return l;
  };
  const write = async (b: Buffer | string): Promise<void> => {
    if (r.closed) throw new Error('connection closed by the server');
    if (!sock.write(b)) await drain(sock);
  };
  try {
    await expect('220');
    sock.write('EHLO big.gen\r\n');
    await expect('250');
    sock.write(`MAIL FROM:<${o.from ?? 'big@gen.test'}>\r\n`);
    const mail = await r.next(t);
    replies.push(mail);
    if (!mail.startsWith('250')) return { reply: mail, replies };
    for (const to of o.to) {
      sock.write(`RCPT TO:<${to}>\r\n`);
      await expect('250');
    }
    let sent = 0;
    const cut = (): boolean => o.cutAfter !== undefined && sent >= o.cutAfter;
    if (o.mode === 'data') {
      sock.write('DATA\r\n');
      await expect('354');
      for (const blk of messageBlocks(m)) {
        await write(stuff(blk));
        sent += blk.length;
        if (cut()) {
          await o.beforeCut?.();
          sock.destroy();
          return { reply: 'cut', replies };
        }
      }
      await write('.\r\n');
    } else {
      const size = o.chunk ?? 64 * 1024;
      let pending = Buffer.alloc(0);
      let acks = 0;
      let chunks = 0;
      const flush = async (last: boolean): Promise<void> => {
        await write(
          Buffer.concat([Buffer.from(`BDAT ${pending.length}${last ? ' LAST' : ''}\r\n`), pending]),
        );
        sent += pending.length;
        pending = Buffer.alloc(0);
        chunks++;
        // Keep at most 64 chunks unanswered (pipelined), as a real client would bound it.
        while (chunks - acks > 64 && !last) {
          await expect('250');
          acks++;
        }
      };
      for (const blk of messageBlocks(m)) {
        let b = blk;
        while (b.length > 0) {
          const take = Math.min(size - pending.length, b.length);
          pending = Buffer.concat([pending, b.subarray(0, take)]);
          b = b.subarray(take);
          if (pending.length === size) await flush(false);
          if (cut()) {
            await o.beforeCut?.();
            sock.destroy();
            return { reply: 'cut', replies };
          }
        }
      }
      await flush(true);
      while (acks < chunks - 1) {
        await expect('250');
        acks++;
      }
    }
    const fin = await r.next(t);
    replies.push(fin);
    sock.write('QUIT\r\n');
    const id = /queued as ([0-9A-F]+)/.exec(fin)?.[1];
    return id !== undefined ? { reply: fin, id, replies } : { reply: fin, replies };
  } finally {
    sock.end();
    setTimeout(() => sock.destroy(), 1000).unref();
  }
}

/** Resident set size of a process in bytes (0 if it is gone). */
export function rssOf(pid: number | undefined): number {
  return procStatus(pid, 'VmRSS');
}

/** Peak resident set size (high-water mark) of a process in bytes. */
export function peakRssOf(pid: number | undefined): number {
  return procStatus(pid, 'VmHWM');
}

function procStatus(pid: number | undefined, key: string): number {
  if (pid === undefined) return 0;
  try {
    const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export const MiB = 1024 * 1024;
