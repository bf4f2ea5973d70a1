// The SMTP server session: a state machine that is pure with respect to sockets. Input arrives via
// feed(); replies leave through a small SessionIo (write/close/setReading/startTls), so tests drive
// it line by line and the listener plugs a socket in.
//
// Invariants:
// - Replies leave in command order, even when hooks are asynchronous: while a hook is pending the
//   session is `busy` and processes no further input (later pipelined commands wait their turn).
// - Replies of a pipelined group are batched into one write: output is flushed when the input is
//   exhausted or after a group-terminating command (RFC 2920: EHLO, DATA, QUIT, NOOP, ...).
// - Memory is bounded: while busy (with more than readPauseBytes buffered) or while the socket's
//   write side is congested, the session asks the transport to stop reading and stops producing
//   replies; command lines are capped (LineBuffer) and bodies obey maxMessageSize. Message data
//   goes to the transaction's sink as it is read (the daemon's sink streams it to the queue);
//   while the sink asks to pause, the session reads nothing more.
// - A transaction that ends without accept() (RSET, a new MAIL after an error, the client gone,
//   STARTTLS, a body error) aborts its sink, so no data outlives it.
// - A slow client cannot hold a session: besides the idle timeout (silence), each command line,
//   each DATA line and the data rate have deadlines that bytes of an unfinished unit do not
//   extend (deadlines.ts); time the server itself spends not reading (a pending hook, the sink
//   asking to pause) is not counted.
// - After close(), detach() or a transport close, no further output is produced.
// Fails: hook rejections become replies (smtpStatusOf); a handler bug becomes 451 4.3.0.
// Size (over 400 lines): the session's state machine and its ordering invariants (busy, pipelining,
// read pauses) are one piece; the verbs are in commands/.

import { smtpStatusOf } from '../../errors.js';
import type { BodyReader } from '../protocol/body.js';
import { parseCommand } from '../protocol/command.js';
import { LineBuffer, TOO_LONG } from '../protocol/lines.js';
import type { MailParams } from '../protocol/params.js';
import { formatReply, type SmtpReply } from '../protocol/reply.js';
import { type CommandTable, defaultCommands } from './commands/table.js';
import { Deadlines, type Waiting } from './deadlines.js';
import type {
  ClientInfo,
  MessageSink,
  RecipientEntry,
  ServerHooks,
  SessionContext,
  TlsInfo,
} from './hooks.js';
import { type ResolvedSessionOptions, resolveOptions, type SessionOptions } from './options.js';

/** What the session needs from its transport. */
export interface SessionIo {
  /** Write reply bytes; false when the transport is congested (call session.onDrain() later). */
  write(data: string): boolean;
  /** Close the connection after pending output; `destroy` drops it at once. */
  close(destroy?: boolean): void;
  /** Start or stop delivering input (back-pressure). */
  setReading(on: boolean): void;
  /** Upgrade to TLS, then call session.tlsStarted(); absent when TLS is not configured. */
  startTls?(): void;
  /** Take the socket away from the server role (ODMR turnaround); receives unconsumed input. */
  handOver?(pending: Buffer): void;
}

export interface PeerInfo {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  /** Already TLS (implicit TLS listener). */
  tls?: TlsInfo;
}

/** Protocol phase: which commands are in sequence. */
export type Phase = 'init' | 'ready' | 'mail' | 'rcpt' | 'bdat';
/** What the next input bytes are. */
export type InputMode = 'command' | 'sasl' | 'data' | 'bdat' | 'tls' | 'closed' | 'detached';

export interface Transaction {
  id: string;
  sender: string;
  sourceRoute?: string[];
  params: MailParams;
  recipients: RecipientEntry[];
  body?: BodyReader;
  /** Where the data goes as it arrives (opened with the body). */
  sink?: MessageSink;
  /** Our Received: header, the sink's first bytes. */
  received?: Buffer;
}

const COMMAND_LINE_MAX = 512;
/** RFC 4954 4: a SASL continuation line may be up to 12288 octets. */
const SASL_LINE_MAX = 12288;

function isLoopback(ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip.startsWith('::ffff:127.');
}

export class SmtpSession implements SessionContext {
  readonly opts: ResolvedSessionOptions;
  readonly hooks: ServerHooks;
  readonly io: SessionIo;
  readonly commands: CommandTable;
  readonly input = new LineBuffer(COMMAND_LINE_MAX);
  readonly client: ClientInfo;
  readonly localAddress: string;
  readonly localPort: number;
  readonly loopback: boolean;

  phase: Phase = 'init';
  mode: InputMode = 'command';
  /** EHLO (rather than HELO) was used. */
  esmtp = false;
  tx: Transaction | null = null;
  busy = false;
  badCommands = 0;
  /** NOOP, RSET, VRFY and HELP since the session began or its last accepted message (junk()). */
  junkCommands = 0;
  /** Last byte from the client (idle timeout). */
  lastActivity: number;
  /** Per-command, per-data-line and data-rate deadlines (slow clients). */
  readonly deadlines: Deadlines;
  /** Handler for the next SASL continuation line (mode 'sasl'). */
  saslStep: ((line: string) => void | Promise<void>) | null = null;
  /** BDAT: octets still to read for the current chunk; whether it is the last; reply if refused. */
  bdatRemaining = 0;
  /** BDAT: the announced size of the current chunk. */
  bdatSize = 0;
  bdatLast = false;
  bdatRefusal: SmtpReply | null = null;
  /** Plaintext bytes discarded after STARTTLS (command injection defence), for logging/tests. */
  droppedAfterStartTls = 0;
  /** Refusals from the connect and HELO hooks, given to every MAIL and ETRN (hooks.ts). */
  connectRefusal: SmtpReply | null = null;
  heloRefusal: SmtpReply | null = null;
  /** BDAT: the refusal came from a hook; the transaction ends once the chunk is read. */
  bdatAbort = false;
  /**
   * BDAT: the reply that failed this transaction's chunks (RFC 3030 §2: the client may have
   * pipelined the rest). Until its BDAT LAST, each further chunk is read, discarded and answered
   * with the same reply, counted as no bad command. Cleared by LAST and by a new transaction.
   */
  bdatFailed: SmtpReply | null = null;
  private disconnected = false;
  /** The client half-closed its side: what it sent is still answered, then we close. */
  private inputEnded = false;
  /** Cancels the tarpit in progress (see tarpit()). */
  private tarpitCancel: (() => void) | null = null;

  private out = '';
  private writeBlocked = false;
  private reading = true;
  private draining = false;

  constructor(
    options: SessionOptions,
    hooks: ServerHooks,
    io: SessionIo,
    peer: PeerInfo,
    commands?: CommandTable,
  ) {
    this.opts = resolveOptions(options);
    this.hooks = hooks;
    this.io = io;
    this.commands = commands ?? defaultCommands(hooks);
    this.client = { ip: peer.remoteAddress, port: peer.remotePort };
    if (peer.tls) this.client.tls = peer.tls;
    this.localAddress = peer.localAddress;
    this.localPort = peer.localPort;
    this.loopback = isLoopback(peer.remoteAddress);
    this.lastActivity = this.opts.clock.now();
    this.deadlines = new Deadlines(this.opts, this.lastActivity);
  }

  // --- SessionContext ---
  get submission(): boolean {
    return this.opts.submission;
  }
  get odmrCustomer(): boolean {
    return this.opts.odmrCustomer;
  }
  get sender(): string | undefined {
    return this.tx?.sender;
  }
  get recipientCount(): number {
    return this.tx?.recipients.length ?? 0;
  }
  get messageId(): string | undefined {
    return this.tx?.id;
  }

  /** Send the greeting (after the connect hook, when there is one). */
  start(): void {
    const hook = this.hooks.connect;
    if (hook === undefined) {
      this.sendGreeting(null);
      return;
    }
    let r: ReturnType<typeof hook>;
    try {
      r = hook(this);
    } catch (e) {
      this.greetFailed(e);
      return;
    }
    if (!(r instanceof Promise)) {
      this.sendGreeting(r);
      return;
    }
    // Input waits (busy) until the greeting is out: a client talking first is still in order.
    this.busy = true;
    this.deadlines.pause(this.opts.clock.now());
    this.updateReading();
    r.then(
      (refusal) => {
        this.sendGreeting(refusal);
        this.resume();
      },
      (e: unknown) => {
        this.greetFailed(e);
        this.resume();
      },
    );
  }

  private sendGreeting(refusal: SmtpReply | null): void {
    if (refusal === null) {
      this.reply(220, undefined, `${this.opts.hostname} ${this.opts.banner}`);
    } else if (refusal.code === 421) {
      this.sendReply(refusal);
      this.close();
      return;
    } else {
      // RFC 5321 3.1: a 554 greeting; the reason is given to every MAIL (Postfix does the same).
      this.connectRefusal = refusal;
      if (refusal.code >= 500)
        this.reply(554, undefined, `${this.opts.hostname} ESMTP not accepting connections`);
      else this.reply(220, undefined, `${this.opts.hostname} ${this.opts.banner}`);
    }
    this.flush();
  }

  private greetFailed(e: unknown): void {
    this.opts.logger?.warn({ err: e, ip: this.client.ip }, 'smtp connect hook failed');
    this.sendReply({ code: 421, enhanced: '4.3.0', text: `${this.opts.hostname} Service not available` });
    this.close();
  }

  /** The refusal a connect or HELO hook left for this session, if any. */
  get stickyRefusal(): SmtpReply | null {
    return this.connectRefusal ?? this.heloRefusal;
  }

  /** Bytes from the client. */
  feed(chunk: Buffer): void {
    if (this.mode === 'closed' || this.mode === 'detached') return;
    this.lastActivity = this.opts.clock.now();
    if (this.mode === 'tls') {
      // Plaintext after STARTTLS, before the handshake took over the socket: never a command.
      this.droppedAfterStartTls += chunk.length;
      return;
    }
    this.input.push(chunk);
    this.pump();
  }

  /** The transport's write side has drained. */
  onDrain(): void {
    if (!this.writeBlocked) return;
    this.writeBlocked = false;
    this.pump();
  }

  /**
   * The client ended its side of the connection (TCP half-close, e.g. `nc -N` or Python's
   * shutdown(SHUT_WR) after the last command) but may still read. Everything it sent is answered
   * in order — including the 250 for a message whose commit is pending, which would otherwise be
   * delivered although the client never heard of it, and so sent again — then we close. A
   * transaction left unfinished (the end came mid-DATA) is abandoned as for a disconnect. An end
   * during a tarpit (a failed AUTH's delay) closes at once.
   */
  onEnd(): void {
    this.inputEnded = true;
    if (this.tarpitCancel !== null) {
      // Held in a tarpit (a failed AUTH): nobody waits for that reply, and the commands still
      // buffered behind it are more guesses. Close without reading them.
      this.close();
      return;
    }
    if (this.mode === 'tls') {
      this.mode = 'closed';
      this.io.close(true);
      return;
    }
    this.pump();
  }

  /** The transport closed (client went away or we closed). */
  onClose(): void {
    this.mode = 'closed';
    this.out = '';
    this.ended();
  }

  /** The session is over: the transaction in progress is abandoned, filters are told once. */
  private ended(): void {
    this.tarpitCancel?.();
    if (this.tx !== null) {
      this.tx.sink?.abort();
      this.tx = null;
      this.hooks.abort?.(this);
    }
    if (!this.disconnected) {
      this.disconnected = true;
      this.hooks.disconnect?.(this);
    }
  }

  /**
   * TLS is now active on the transport (after STARTTLS). RFC 3207 4.2: discard every piece of
   * knowledge obtained from the client before the handshake — HELO, the transaction and the
   * AUTH identity: plaintext before STARTTLS may have come from an attacker in the path, who
   * must not be able to fix the encrypted session to an account of its choosing.
   */
  tlsStarted(info: TlsInfo): void {
    if (this.mode !== 'tls') return;
    this.client.tls = info;
    delete this.client.helo;
    delete this.client.auth;
    delete this.client.authMechanism;
    this.esmtp = false;
    this.phase = 'init';
    this.tx?.sink?.abort();
    this.tx = null;
    this.mode = 'command';
    this.lastActivity = this.opts.clock.now();
    this.deadlines.ready(this.lastActivity);
    this.pump();
  }

  /**
   * The listener's sweep: close a connection that sent nothing for idleTimeoutMs, or whose
   * command line, DATA line or data rate missed its deadline (a slowloris trickling bytes).
   * A TLS handshake that does not finish in commandTimeoutMs is cut without a reply.
   */
  checkIdle(now: number): void {
    if (this.mode === 'closed' || this.mode === 'detached' || this.busy) return;
    const m = this.mode;
    const waiting: Waiting =
      m === 'command' || m === 'sasl' || m === 'tls' ? 'command' : m === 'data' ? 'line' : 'chunk';
    const expiry = this.deadlines.expired(now, waiting);
    if (expiry === null && now - this.lastActivity < this.opts.idleTimeoutMs) return;
    this.opts.logger?.info(
      { ip: this.client.ip, timeout: expiry ?? 'idle', mode: m },
      'smtp connection timed out',
    );
    if (this.mode === 'tls') {
      this.mode = 'closed';
      this.io.close(true);
      return;
    }
    const text = expiry === 'rate' ? 'Error: data rate too low' : 'Error: timeout exceeded';
    this.reply(421, '4.4.2', `${this.opts.hostname} ${text}`);
    this.close(this.writeBlocked);
  }

  /** Graceful stop: finish the current transaction, then 421 4.3.2 and close. */
  shutdown(): void {
    this.draining = true;
    if (!this.busy && (this.mode === 'command' || this.mode === 'sasl')) this.pump();
  }

  /**
   * The grace of a stop is over: whatever the session is doing (in DATA, waiting for a line),
   * `421 4.3.2` and close, so that the client knows its transaction did not end in a 250. A
   * commit already under way may still complete (the message is durable, the client resends:
   * a duplicate, never a loss).
   */
  cutOff(): void {
    if (this.mode === 'closed' || this.mode === 'detached') return;
    if (this.mode === 'tls') {
      this.close(true);
      return;
    }
    this.reply(421, '4.3.2', `${this.opts.hostname} Service shutting down`);
    this.close(); // the transaction, if any, is abandoned (ended())
  }

  /** Stop the server role without closing the transport; returns the unconsumed input. */
  detach(): Buffer {
    this.flush();
    this.mode = 'detached';
    this.ended();
    return this.input.takeAll();
  }

  /** Hand the socket to another role (ATRN): flush, detach, and give the transport the input. */
  handOver(): void {
    const pending = this.detach();
    this.io.handOver?.(pending);
  }

  // --- output ---

  reply(code: number, enhanced: string | undefined, text: string | readonly string[]): void {
    if (this.mode === 'closed' || this.mode === 'detached') return;
    this.out += formatReply(enhanced === undefined ? { code, text } : { code, enhanced, text });
  }

  sendReply(r: SmtpReply): void {
    if (this.mode === 'closed' || this.mode === 'detached') return;
    this.out += formatReply(r);
  }

  /** A hook's refusal, sent as is; a 421 also ends the session (RFC 5321 3.8). */
  refuse(r: SmtpReply): void {
    this.sendReply(r);
    if (r.code === 421) this.close();
  }

  /** Reply to a bad command and count it; too many bad commands end the session. */
  badCommand(code: number, enhanced: string, text: string): void {
    this.reply(code, enhanced, text);
    if (++this.badCommands >= this.opts.maxBadCommands) {
      this.reply(421, '4.7.0', `${this.opts.hostname} Error: too many errors`);
      this.close();
    }
  }

  /**
   * Counts a command that moves nothing forward (NOOP, RSET, VRFY, HELP), after its reply: past
   * maxJunkCommands since the last accepted message each one counts as a bad command, so a
   * client that only keeps the line busy — one NOOP just inside each command deadline — is
   * closed after maxBadCommands more (Postfix's smtpd_junk_command_limit).
   */
  junk(): void {
    if (++this.junkCommands <= this.opts.maxJunkCommands) return;
    if (++this.badCommands >= this.opts.maxBadCommands) {
      this.reply(421, '4.7.0', `${this.opts.hostname} Error: too many commands without mail`);
      this.close();
    }
  }

  flush(): void {
    if (this.out.length === 0 || this.mode === 'closed' || this.mode === 'detached') return;
    const data = this.out;
    this.out = '';
    if (!this.io.write(data)) this.writeBlocked = true;
  }

  /** Flush and close the connection. */
  close(destroy = false): void {
    if (this.mode === 'closed' || this.mode === 'detached') return;
    this.flush();
    this.mode = 'closed';
    this.ended();
    this.io.close(destroy);
  }

  /**
   * Resolves after ms, or at once when the session ends first (it is closed then, so a reply
   * made afterwards is dropped). For the delay before an AUTH failure's 535: a client that
   * half-closes meanwhile is closed without that reply instead of being answered in order.
   */
  tarpit(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        this.tarpitCancel = null;
        resolve();
      };
      const cancel = this.opts.clock.setTimer(ms, done);
      this.tarpitCancel = () => {
        cancel();
        done();
      };
    });
  }

  /** Ends the transaction in progress without a message (filters are told: hooks.abort). */
  resetTransaction(): void {
    this.bdatFailed = null;
    if (this.tx !== null) {
      this.tx.sink?.abort();
      this.tx = null;
      this.hooks.abort?.(this);
    }
    if (this.phase !== 'init') this.phase = 'ready';
  }

  /** Ends the transaction whose message goes to hooks.accept (no abort: accept ends it). */
  completeTransaction(): void {
    this.bdatFailed = null;
    this.tx = null;
    if (this.phase !== 'init') this.phase = 'ready';
  }

  /**
   * Moves what the body reader collected into the transaction's sink. Returns a promise to wait
   * for when the sink asks for a pause, undefined otherwise. After a body error nothing more is
   * kept: the sink is dropped at once and the error is answered at the end of the data.
   */
  private spoolBody(body: BodyReader): Promise<void> | undefined {
    const sink = this.tx?.sink;
    if (sink === undefined) return undefined;
    if (body.error !== null) {
      sink.abort();
      return undefined;
    }
    const chunks = body.chunks;
    if (chunks.length === 0) return undefined;
    let ok = true;
    for (let i = 0; i < chunks.length; i++) if (!sink.write(chunks[i]!)) ok = false;
    chunks.length = 0;
    return ok ? undefined : sink.drained();
  }

  /** Implicit TLS (RFC 8314): nothing is read until the handshake is done (tlsStarted). */
  awaitTls(): void {
    this.mode = 'tls';
    this.deadlines.ready(this.opts.clock.now());
  }

  /** Switch to TLS: drop pipelined plaintext and let the transport upgrade. */
  beginTls(): void {
    this.droppedAfterStartTls += this.input.takeAll().length;
    this.flush();
    this.mode = 'tls';
    this.io.startTls?.();
  }

  /** Enter SASL continuation mode with the given step handler (or leave it with null). */
  setSaslStep(step: ((line: string) => void | Promise<void>) | null): void {
    this.saslStep = step;
    this.mode = step === null ? 'command' : 'sasl';
    this.input.maxLine = step === null ? COMMAND_LINE_MAX : SASL_LINE_MAX;
  }

  /** Mechanisms offered now (RFC 4954 + our TLS rule). */
  authMechanisms(): string[] {
    const m: string[] = [];
    const h = this.hooks;
    if (h.verifyPassword && (this.client.tls || this.loopback || this.opts.allowPlainWithoutTls)) {
      m.push('PLAIN', 'LOGIN');
    }
    if (h.cramSecret) m.push('CRAM-MD5');
    return m;
  }

  // --- input processing ---

  private pump(): void {
    let exhausted = false;
    while (!this.busy && !this.writeBlocked) {
      const mode = this.mode;
      let pending: void | Promise<void> | undefined;
      if (mode === 'command' || mode === 'sasl') {
        if (this.draining && this.tx === null && mode === 'command') {
          this.reply(421, '4.3.2', `${this.opts.hostname} Service shutting down`);
          this.close();
          return;
        }
        const line = this.input.readLine();
        if (line === null) {
          exhausted = true;
          break;
        }
        // A whole line is in: the wait for the next one starts now.
        this.deadlines.ready(this.opts.clock.now());
        pending = mode === 'sasl' ? this.onSaslLine(line) : this.onCommandLine(line);
      } else if (mode === 'data') {
        const buf = this.input.peek();
        if (buf === null) {
          exhausted = true;
          break;
        }
        const body = this.tx?.body as BodyReader;
        const used = body.feed(buf);
        this.deadlines.data(used, buf.subarray(0, used).includes(10), this.opts.clock.now());
        this.input.advance(used);
        const pause = this.spoolBody(body);
        if (body.done) {
          this.mode = 'command';
          pending = this.commandsFinishData();
        } else pending = pause;
      } else if (mode === 'bdat') {
        if (this.bdatRemaining > 0) {
          const buf = this.input.peek();
          if (buf === null) {
            exhausted = true;
            break;
          }
          const n = Math.min(buf.length, this.bdatRemaining);
          const body = this.tx?.body;
          if (this.bdatRefusal === null && body !== undefined) {
            body.feed(n === buf.length ? buf : buf.subarray(0, n));
            pending = this.spoolBody(body);
          }
          this.input.advance(n);
          this.bdatRemaining -= n;
          this.deadlines.data(n, false, this.opts.clock.now());
        }
        if (this.bdatRemaining === 0) {
          this.mode = 'command';
          const finished = this.commandsFinishBdat();
          pending = pending === undefined ? finished : pending.then(() => finished);
        }
      } else {
        break;
      }
      this.trackTransfer();
      if (pending !== undefined) this.wait(pending);
    }
    if (!this.busy) this.flush();
    // Half-closed and every whole command answered: nothing more can come (a partial line or
    // an unfinished message is dropped, as on a disconnect).
    if (exhausted && this.inputEnded) {
      this.close();
      return;
    }
    this.updateReading();
  }

  /** Message data is flowing from 354 (or the first BDAT) until the body or BDAT LAST is read. */
  private trackTransfer(): void {
    const inTransfer = this.mode === 'data' || this.mode === 'bdat' || this.phase === 'bdat';
    if (inTransfer) this.deadlines.startTransfer(this.opts.clock.now());
    else if (this.deadlines.inTransfer) this.deadlines.endTransfer();
  }

  private commandsFinishData(): void | Promise<void> {
    return this.commands.finishData(this);
  }

  private commandsFinishBdat(): void | Promise<void> {
    return this.commands.finishBdat(this);
  }

  private onCommandLine(line: string | typeof TOO_LONG): void | Promise<void> {
    if (line === TOO_LONG) {
      this.badCommand(500, '5.5.6', 'Line too long');
      return;
    }
    const { verb, args } = parseCommand(line);
    const spec = this.commands.verbs.get(verb);
    if (spec === undefined) {
      this.badCommand(500, '5.5.2', 'Command unrecognized');
      return;
    }
    if (!spec.phases.includes(this.phase)) {
      this.badCommand(503, '5.5.1', spec.outOfSequence?.(this) ?? 'Bad sequence of commands');
      return;
    }
    const r = spec.handler(this, args);
    if (!spec.endsGroup) return r;
    if (r === undefined) {
      this.flush();
      return;
    }
    return r.then(() => this.flush());
  }

  private onSaslLine(line: string | typeof TOO_LONG): void | Promise<void> {
    const step = this.saslStep;
    this.setSaslStep(null);
    if (line === TOO_LONG) {
      this.badCommand(500, '5.5.6', 'Authentication line too long');
      return;
    }
    if (line === '*') {
      this.reply(501, '5.0.0', 'Authentication cancelled');
      return;
    }
    const r = step?.(line);
    return r === undefined ? this.flush() : r.then(() => this.flush());
  }

  /** Block input processing until `p` settles; keeps replies in order. */
  private wait(p: Promise<void>): void {
    this.busy = true;
    // The server, not the client, holds things up until p settles: no deadline runs meanwhile.
    this.deadlines.pause(this.opts.clock.now());
    this.updateReading();
    p.then(
      () => this.resume(),
      (e: unknown) => {
        const st = smtpStatusOf(e);
        this.opts.logger?.warn({ err: e, ip: this.client.ip }, 'smtp session handler failed');
        if (this.bdatRemaining > 0) {
          // A BDAT chunk not read yet (its DATA-stage hook failed): read it to its end, discarded,
          // so that its octets are not taken for commands; the reply comes at its end.
          this.bdatRefusal = { code: st.code, enhanced: st.enhanced, text: 'Local error in processing' };
          this.bdatAbort = true;
          this.mode = 'bdat';
          this.resume();
          return;
        }
        if (this.mode === 'data' || this.mode === 'bdat') this.mode = 'command';
        this.resetTransaction();
        this.reply(st.code, st.enhanced, 'Local error in processing');
        this.resume();
      },
    );
  }

  private resume(): void {
    this.busy = false;
    const now = this.opts.clock.now();
    this.deadlines.resume(now);
    // Nor is it silence of the client's: it was waiting for us.
    this.lastActivity = Math.max(this.lastActivity, now);
    if (this.mode === 'closed' || this.mode === 'detached') return;
    this.pump();
  }

  private updateReading(): void {
    if (this.mode === 'tls' || this.mode === 'detached') return;
    const want =
      this.mode !== 'closed' &&
      !this.writeBlocked &&
      (!this.busy || this.input.buffered < this.opts.readPauseBytes);
    if (want !== this.reading) {
      this.reading = want;
      if (this.mode !== 'closed') this.io.setReading(want);
    }
  }

  /** Whether the session currently wants input (for tests and the listener). */
  get isReading(): boolean {
    return this.reading;
  }
}
