// One socket to a milter (inet:host:port or unix:/path): writes encoded commands and hands out
// the filter's responses one at a time, each within a deadline.
// Invariant: at most one reader waits at a time (the client asks, then reads, in protocol order);
// after the first failure — connect error, timeout, peer close, malformed packet — the socket is
// destroyed and every later call fails with the same transient MtaError.
import net from 'node:net';
import { MtaError } from '../errors.js';
import type { Clock } from '../util/clock.js';
import {
  decodeResponse,
  encodeCommand,
  type MilterResponse,
  type MtaCommand,
  type Packet,
  PacketReader,
} from './protocol.js';

export type MilterAddress = { kind: 'inet'; host: string; port: number } | { kind: 'unix'; path: string };

function formatAddress(a: MilterAddress): string {
  return a.kind === 'unix' ? `unix:${a.path}` : `inet:${a.host}:${a.port}`;
}

const failure = (why: string, cause?: unknown): MtaError =>
  new MtaError('MILTER_IO', 'transient', why, { smtp: { code: 451, enhanced: '4.7.1' }, cause });

export class MilterConnection {
  private readonly reader = new PacketReader();
  private readonly queue: Packet[] = [];
  private waiter: { resolve: (p: Packet) => void; reject: (e: MtaError) => void } | undefined;
  private failed: MtaError | undefined;

  private constructor(
    private readonly sock: net.Socket,
    private readonly clock: Clock,
    readonly name: string,
  ) {
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      const got = this.reader.push(chunk);
      if (!Array.isArray(got)) return this.fail(got);
      this.queue.push(...got);
      this.wake();
    });
    sock.on('error', (e) => this.fail(failure(`milter ${name}: ${e.message}`, e)));
    sock.on('close', () => this.fail(failure(`milter ${name} closed the connection`)));
  }

  static connect(addr: MilterAddress, timeoutMs: number, clock: Clock): Promise<MilterConnection> {
    const name = formatAddress(addr);
    return new Promise((resolve, reject) => {
      const sock =
        addr.kind === 'unix' ? net.connect({ path: addr.path }) : net.connect(addr.port, addr.host);
      const cancel = clock.setTimer(timeoutMs, () => {
        sock.destroy();
        reject(failure(`connect to milter ${name}: timed out`));
      });
      sock.once('error', (e) => {
        cancel();
        reject(failure(`connect to milter ${name}: ${e.message}`, e));
      });
      sock.once('connect', () => {
        cancel();
        sock.removeAllListeners('error');
        resolve(new MilterConnection(sock, clock, name));
      });
    });
  }

  get alive(): boolean {
    return this.failed === undefined;
  }

  /** Writes commands in one batch; failures surface on the next read. */
  send(cmds: readonly MtaCommand[]): void {
    if (this.failed) return;
    if (cmds.length === 1) this.sock.write(encodeCommand(cmds[0] as MtaCommand));
    else this.sock.write(Buffer.concat(cmds.map(encodeCommand)));
  }

  /** The filter's next response; rejects after `timeoutMs` or on any failure. */
  next(timeoutMs: number, what: string): Promise<MilterResponse> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise<Packet>((resolve, reject) => {
      const cancel = this.clock.setTimer(timeoutMs, () =>
        this.fail(failure(`milter ${this.name}: timeout waiting for the reply to ${what}`)),
      );
      this.waiter = {
        resolve: (p) => {
          cancel();
          resolve(p);
        },
        reject: (e) => {
          cancel();
          reject(e);
        },
      };
      this.wake();
    }).then((p) => {
      const r = decodeResponse(p);
      if (r instanceof MtaError) {
        this.fail(failure(`milter ${this.name}: ${r.message}`));
        throw this.failed;
      }
      return r;
    });
  }

  /** Sends QUIT (best effort) and closes. */
  quit(): void {
    if (this.failed) return;
    this.sock.end(encodeCommand({ type: 'quit' }));
    this.failed = failure(`milter ${this.name}: closed`);
    this.sock.unref();
  }

  close(): void {
    this.fail(failure(`milter ${this.name}: closed`));
  }

  private wake(): void {
    const w = this.waiter;
    if (w === undefined || this.queue.length === 0) return;
    this.waiter = undefined;
    w.resolve(this.queue.shift() as Packet);
  }

  private fail(e: MtaError): void {
    if (this.failed === undefined) this.failed = e;
    this.sock.destroy();
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failed);
  }
}
