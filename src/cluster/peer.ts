// Sessions with another node of the cluster, authenticated with the cluster secret (AUTH
// CRAM-MD5 as "cluster:<node>", so the secret never crosses the wire): an ETRN forwarded to a
// domain's home (whose reply carries the home's exact count), and an ODMR session opened on a
// customer's behalf (ATRN at any node, atrn-proxy.ts).
// Invariant: every socket opened here is closed when the call ends, except the ODMR socket
// handed to the caller after the home's 250 to ATRN. Timeouts are short: a peer is on the
// same network, and a customer is waiting.
// Fails: forwardEtrn never rejects (a failure is reported per lane as code 0); openAtrn rejects
// only with an MtaError saying why the peer could not be asked.

import net from 'node:net';
import { errorText, MtaError } from '../errors.js';
import type { PeerTarget } from '../delivery/router.js';
import { cramMd5Response } from '../smtp/client/auth.js';
import { SmtpClient } from '../smtp/client/index.js';
import { ReplyParser, type Reply } from '../smtp/client/reply.js';

export interface PeerEtrnReply {
  lane: string;
  /** The home's reply code; 0 when the home could not be asked. */
  code: number;
  /** Pieces the home said it holds (253), 0 otherwise. */
  count: number;
  text: string;
}

/** Sends `ETRN #lane` for each lane to the home; one reply per lane, in order. */
export async function forwardEtrn(
  target: PeerTarget,
  lanes: readonly string[],
  name: string,
  timeoutMs: number,
): Promise<PeerEtrnReply[]> {
  let client: SmtpClient;
  try {
    client = await SmtpClient.connect(target.host, target.port, {
      name,
      tls: { mode: 'none' },
      auth: { user: target.auth.user, pass: target.auth.password, mechanisms: ['CRAM-MD5'] },
      timeouts: { connect: timeoutMs, greeting: timeoutMs, command: timeoutMs, quit: timeoutMs },
    });
  } catch (e) {
    return lanes.map((lane) => ({ lane, code: 0, count: 0, text: errorText(e) }));
  }
  const out: PeerEtrnReply[] = [];
  try {
    for (const lane of lanes) {
      try {
        const r = await client.connection.send(`ETRN #${lane}\r\n`, timeoutMs, 'ETRN reply');
        const text = r.lines.join(' ');
        const m = /(\d+) pending messages/.exec(text);
        out.push({ lane, code: r.code, count: r.code === 253 && m ? Number(m[1]) : 0, text });
      } catch (e) {
        out.push({ lane, code: 0, count: 0, text: errorText(e) });
      }
    }
  } finally {
    await client.quit();
  }
  return out;
}

/** Reads whole replies from a raw socket (the ODMR session before its turnaround). */
class ReplyReader {
  private readonly parser = new ReplyParser();
  private readonly ready: Reply[] = [];
  private waiter: ((r: Reply | Error) => void) | undefined;
  private failure: Error | undefined;

  constructor(private readonly socket: net.Socket) {
    socket.on('data', this.onData);
    socket.once('error', (e) => this.fail(e));
    socket.once('close', () => this.fail(new Error('connection closed')));
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      for (const r of this.parser.feed(chunk)) this.ready.push(r);
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
      return;
    }
    this.wake();
  };

  private fail(e: Error): void {
    this.failure ??= e;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    if (!w) return;
    const r = this.ready.shift();
    if (r) {
      this.waiter = undefined;
      w(r);
    } else if (this.failure) {
      this.waiter = undefined;
      w(this.failure);
    }
  }

  next(timeoutMs: number, what: string): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (r) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      this.wake();
    });
  }

  /** Stops reading; bytes the parser holds beyond the last reply are lost (there are none). */
  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.removeAllListeners('error');
    this.socket.removeAllListeners('close');
  }

  async command(line: string, timeoutMs: number, what: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    return this.next(timeoutMs, what);
  }
}

export interface OpenedAtrn {
  /** The home's reply to ATRN. */
  code: number;
  text: string;
  /** On 250: the socket, now waiting for a 220 from "the customer". */
  socket?: net.Socket;
}

/**
 * Opens an ODMR session to a domain's home, authenticates as this node and sends
 * `ATRN d1,d2`. On 250 the home has reversed roles and waits for our 220: the socket is handed
 * back. Any other reply ends the session.
 */
export async function openAtrn(
  target: PeerTarget,
  domains: readonly string[],
  name: string,
  timeoutMs: number,
): Promise<OpenedAtrn> {
  const socket = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new MtaError('PEER_CONNECT', 'transient', `no connection to ${target.node} within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      s.setNoDelay(true);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(new MtaError('PEER_CONNECT', 'transient', `cannot reach ${target.node}: ${e.message}`));
    });
  });
  const io = new ReplyReader(socket);
  try {
    const g = await io.next(timeoutMs, 'greeting');
    if (g.code !== 220) throw new Error(`greeted with ${g.code}`);
    const e = await io.command(`EHLO ${name}`, timeoutMs, 'EHLO reply');
    if (e.code !== 250) throw new Error(`EHLO refused with ${e.code}`);
    let r = await io.command('AUTH CRAM-MD5', timeoutMs, 'AUTH reply');
    if (r.code === 334)
      r = await io.command(
        cramMd5Response(target.auth.user, target.auth.password, r.lines[0] ?? ''),
        timeoutMs,
        'AUTH reply',
      );
    if (r.code !== 235) throw new Error(`AUTH refused with ${r.code} ${r.lines.join(' ')}`);
    const a = await io.command(`ATRN ${domains.join(',')}`, timeoutMs, 'ATRN reply');
    io.detach();
    if (a.code !== 250) {
      socket.end('QUIT\r\n');
      socket.destroy();
      return { code: a.code, text: a.lines.join(' ') };
    }
    return { code: 250, text: a.lines.join(' '), socket };
  } catch (e) {
    io.detach();
    socket.destroy();
    throw new MtaError('PEER_ODMR', 'transient', `ODMR session with ${target.node}: ${errorText(e)}`);
  }
}
