// Test support for the SMTP server session (and for ODMR tests that reuse it): a recording
// SessionIo and a harness that drives a session with strings, on the fake clock, and returns
// its output. Never shipped.

import type { ReceivedMessage, ServerHooks } from '../../src/smtp/server/hooks.js';
import type { SessionOptions } from '../../src/smtp/server/options.js';
import { type PeerInfo, type SessionIo, SmtpSession } from '../../src/smtp/server/session.js';
import { chunksOf } from '../../src/smtp/server/message-data.js';
import { FakeClock } from './clock.js';
import { tick } from './wait.js';

export class RecordingIo implements SessionIo {
  writes: string[] = [];
  closed = false;
  destroyed = false;
  reading = true;
  /** What write() returns (false simulates a congested socket). */
  writable = true;
  tlsRequested = 0;
  handedOver: Buffer | null = null;
  startTls?: () => void;
  constructor(tls = false) {
    if (tls) this.startTls = () => void this.tlsRequested++;
  }
  write(data: string): boolean {
    this.writes.push(data);
    return this.writable;
  }
  close(destroy = false): void {
    this.closed = true;
    this.destroyed ||= destroy;
  }
  setReading(on: boolean): void {
    this.reading = on;
  }
  handOver(pending: Buffer): void {
    this.handedOver = pending;
  }
}

export interface HarnessOptions {
  options?: Partial<SessionOptions>;
  hooks?: Partial<ServerHooks>;
  peer?: Partial<PeerInfo>;
  tls?: boolean;
}

/** A session with recording io, in-memory accept and a manual clock. */
export class Harness {
  readonly clock = new FakeClock();
  readonly io: RecordingIo;
  readonly session: SmtpSession;
  readonly accepted: ReceivedMessage[] = [];
  private seen = 0;
  private ids = 0;

  constructor(h: HarnessOptions = {}) {
    this.io = new RecordingIo(h.tls ?? false);
    const hooks: ServerHooks = {
      newMessageId: () => `M${++this.ids}`,
      accept: async (m) => {
        this.accepted.push(m);
        return { queueId: m.id };
      },
      ...h.hooks,
    };
    this.session = new SmtpSession({ hostname: 'mx.test', clock: this.clock, ...h.options }, hooks, this.io, {
      remoteAddress: '192.0.2.7',
      remotePort: 40000,
      localAddress: '192.0.2.1',
      localPort: 25,
      ...h.peer,
    });
    this.session.start();
    this.output();
  }

  /** Everything written since the last call. */
  output(): string {
    const s = this.io.writes.slice(this.seen).join('');
    this.seen = this.io.writes.length;
    return s;
  }

  /** Feed input and return the output after pending hooks settled. */
  async send(input: string | Buffer): Promise<string> {
    this.session.feed(typeof input === 'string' ? Buffer.from(input, 'utf8') : input);
    for (let i = 0; i < 5; i++) await tick();
    return this.output();
  }

  /** Reply codes (with enhanced code, if any) of the output, one per final line. */
  static codes(out: string): string[] {
    return out
      .split('\r\n')
      .filter((l) => /^\d{3} /.test(l))
      .map((l) => {
        const m = /^(\d{3}) (\d\.\d{1,3}\.\d{1,3})?/.exec(l);
        return m?.[2] ? `${m[1]} ${m[2]}` : (m?.[1] ?? '');
      });
  }

  /** EHLO + MAIL + RCPT, asserting nothing. */
  async transaction(from = 'a@example.org', to = ['b@example.net']): Promise<string> {
    let cmds = `EHLO client.example\r\nMAIL FROM:<${from}>\r\n`;
    for (const t of to) cmds += `RCPT TO:<${t}>\r\n`;
    return this.send(cmds);
  }

  /** The content of an accepted message without our Received: header. */
  static body(m: ReceivedMessage): string {
    return Buffer.concat(chunksOf(m.data).slice(1)).toString('latin1');
  }
}
