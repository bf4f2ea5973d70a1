// One milter's side of one SMTP session (Postfix's milter8.c, in our own words): the option
// negotiation, one event per SMTP stage with the macros the filter wants, the message (headers,
// body, end of message) with the filter's edits collected, and the replies mapped to verdicts.
// States: a filter that accepted the connection, or failed with default_action = accept, is
// "off" (no more events this session); one that failed with tempfail/reject is "error" and gives
// that reply to every later event (Postfix's sticky default reply); a filter that accepted the
// message gets no more events for that message.
// Fails: never rejects — network trouble, timeouts and malformed replies become the default
// action's verdict.
// Size (over 400 lines): one filter's state machine over every SMTP stage; its states must be read
// together.
import type { SmtpReply } from '../smtp/protocol/reply.js';
import type { Clock } from '../util/clock.js';
import { MilterConnection, type MilterAddress } from './connection.js';
import { fieldForMilter, type HeaderEdit, type SplitMessage } from './message.js';
import {
  BODY_CHUNK,
  type ConnectFamily,
  MILTER_VERSION,
  type MilterResponse,
  type MtaCommand,
  SMFIF,
  SMFIM,
  SMFIP,
  type MacroStage,
} from './protocol.js';

export type DefaultAction = 'accept' | 'tempfail' | 'reject';

export interface MilterSettings {
  name: string;
  address: MilterAddress;
  connectTimeoutMs: number;
  /** CONNECT, HELO, MAIL, RCPT, DATA and the negotiation. */
  commandTimeoutMs: number;
  /** Headers, body and end of message. */
  contentTimeoutMs: number;
  defaultAction: DefaultAction;
}

/** What a stage's event decided. */
export type Verdict =
  | { kind: 'continue' }
  /** The filter wants no more events (this message, or the whole connection at CONNECT/HELO). */
  | { kind: 'accept' }
  | { kind: 'reply'; reply: SmtpReply }
  | { kind: 'discard' };

export type MessageEdit =
  | HeaderEdit
  | { type: 'replbody'; chunk: Buffer }
  | { type: 'addrcpt'; rcpt: string; args: string }
  | { type: 'delrcpt'; rcpt: string }
  | { type: 'chgfrom'; from: string; args: string };

export interface MessageResult {
  verdict: Verdict;
  edits: MessageEdit[];
  quarantine?: string;
  /** The filter asked for SMFIP_HDR_LEADSPC (header values carry their leading space). */
  leadingSpace: boolean;
}

/** Macro values at the moment of an event: name → value, undefined when unknown. */
export type MacroSource = (name: string) => string | undefined;

/** What we offer: every action, every protocol step and no-reply flag but RCPT_REJ. */
const OFFER_ACTIONS =
  SMFIF.ADDHDRS |
  SMFIF.CHGBODY |
  SMFIF.ADDRCPT |
  SMFIF.DELRCPT |
  SMFIF.CHGHDRS |
  SMFIF.QUARANTINE |
  SMFIF.CHGFROM |
  SMFIF.ADDRCPT_PAR |
  SMFIF.SETSYMLIST;
const OFFER_PROTOCOL = 0x1fffff & ~SMFIP.RCPT_REJ;

/** The macros sent at each stage unless the filter names its own (Postfix's defaults, widened). */
const DEFAULT_MACROS: Record<MacroStage, string[]> = {
  [SMFIM.CONNECT]: [
    'j',
    '{daemon_name}',
    '{daemon_addr}',
    '{daemon_port}',
    'v',
    '_',
    '{client_addr}',
    '{client_port}',
    '{client_name}',
    '{client_ptr}',
  ],
  [SMFIM.HELO]: ['{tls_version}', '{cipher}', '{cipher_bits}', '{cert_subject}', '{cert_issuer}'],
  [SMFIM.ENVFROM]: [
    'i',
    '{auth_type}',
    '{auth_authen}',
    '{auth_author}',
    '{mail_addr}',
    '{mail_host}',
    '{mail_mailer}',
  ],
  [SMFIM.ENVRCPT]: ['i', '{rcpt_addr}', '{rcpt_host}', '{rcpt_mailer}'],
  [SMFIM.DATA]: ['i'],
  [SMFIM.EOM]: ['i'],
  [SMFIM.EOH]: ['i'],
};

const REJECT: SmtpReply = { code: 550, enhanced: '5.7.1', text: 'Command rejected' };
const TEMPFAIL: SmtpReply = { code: 451, enhanced: '4.7.1', text: 'Service unavailable - try again later' };
const SHUTDOWN: SmtpReply = {
  code: 421,
  enhanced: '4.7.0',
  text: 'Service unavailable - closing connection',
};

/** A filter's SMFIR_REPLYCODE text as a reply: 4xx/5xx only, every line with the same code. */
export function parseReplyCode(text: string): SmtpReply | null {
  const lines = text.replace(/\r\n$/, '').split('\r\n');
  let code = 0;
  let enhanced: string | undefined;
  const out: string[] = [];
  for (const [i, l] of lines.entries()) {
    const m = /^([45]\d\d)([ -])(?:([245]\.\d{1,3}\.\d{1,3})(?: |$))?(.*)$/.exec(l);
    if (m === null) return null;
    const c = Number(m[1]);
    if (i === 0) {
      code = c;
      enhanced = m[3];
    } else if (c !== code) return null;
    if ((m[2] === ' ') !== (i === lines.length - 1)) return null;
    if (m[3] !== undefined && m[3][0] !== String(code)[0]) return null;
    // Sendmail treats the text as a format string: "%%" is a literal "%".
    out.push((m[4] ?? '').replace(/%%/g, '%'));
  }
  if (code === 0) return null;
  return enhanced === undefined
    ? { code, text: out }
    : { code, enhanced, text: out.length === 1 ? (out[0] as string) : out };
}

export class MilterClient {
  private conn: MilterConnection | undefined;
  private state: 'new' | 'ready' | 'off' | 'error' = 'new';
  private errorReply: SmtpReply | null = null;
  private version = 0;
  private protocol = 0;
  private macroLists: Record<MacroStage, string[]> = { ...DEFAULT_MACROS };
  /** The filter holds message state (MAIL was sent and no end of message closed it). */
  private inMessage = false;
  /** The filter accepted the current message: no more events for it. */
  private messageDone = false;

  constructor(
    readonly settings: MilterSettings,
    private readonly clock: Clock,
    private readonly log: (obj: object, msg: string) => void,
  ) {}

  get active(): boolean {
    return this.state === 'ready' || this.state === 'new';
  }

  /** CONNECT: opens the connection, negotiates, reports the client. */
  async connect(
    info: { hostname: string; family: ConnectFamily; port: number; address: string },
    macros: MacroSource,
  ): Promise<Verdict> {
    if (this.state !== 'new') return this.idle();
    try {
      this.conn = await MilterConnection.connect(
        this.settings.address,
        this.settings.connectTimeoutMs,
        this.clock,
      );
      await this.negotiate();
    } catch (e) {
      return this.failed(e);
    }
    return this.event(
      SMFIM.CONNECT,
      'C',
      { type: 'connect', ...info },
      SMFIP.NOCONNECT,
      SMFIP.NR_CONN,
      macros,
      true,
    );
  }

  helo(name: string, macros: MacroSource): Promise<Verdict> {
    return this.event(SMFIM.HELO, 'H', { type: 'helo', name }, SMFIP.NOHELO, SMFIP.NR_HELO, macros, true);
  }

  mail(args: string[], macros: MacroSource): Promise<Verdict> {
    if (this.state === 'ready') {
      this.inMessage = true;
      this.messageDone = false;
    }
    return this.event(SMFIM.ENVFROM, 'M', { type: 'mail', args }, SMFIP.NOMAIL, SMFIP.NR_MAIL, macros, false);
  }

  rcpt(args: string[], macros: MacroSource): Promise<Verdict> {
    if (this.messageDone) return Promise.resolve({ kind: 'continue' });
    return this.event(SMFIM.ENVRCPT, 'R', { type: 'rcpt', args }, SMFIP.NORCPT, SMFIP.NR_RCPT, macros, false);
  }

  data(macros: MacroSource): Promise<Verdict> {
    if (this.messageDone) return Promise.resolve({ kind: 'continue' });
    // DATA exists from protocol version 4 on; older filters never get it.
    if (this.state === 'ready' && this.version < 4) return Promise.resolve({ kind: 'continue' });
    return this.event(SMFIM.DATA, 'T', { type: 'data' }, SMFIP.NODATA, SMFIP.NR_DATA, macros, false);
  }

  /** Headers, end of headers, body and end of message; the filter's edits are returned in order. */
  async message(m: SplitMessage, macros: MacroSource): Promise<MessageResult> {
    const leadingSpace = (this.protocol & SMFIP.HDR_LEADSPC) !== 0;
    const result: MessageResult = { verdict: { kind: 'continue' }, edits: [], leadingSpace };
    if (this.state !== 'ready' || this.messageDone) {
      this.inMessage = this.inMessage && this.state === 'ready';
      result.verdict = this.idle();
      return result;
    }
    const conn = this.conn as MilterConnection;
    const t = this.settings.contentTimeoutMs;
    const p = this.protocol;
    try {
      if ((p & SMFIP.NOHDRS) === 0) {
        this.sendMacros(SMFIM.EOH, 'L', macros);
        for (const f of m.fields) {
          if (f.ours !== undefined) continue;
          const { name, value } = fieldForMilter(f, leadingSpace);
          conn.send([{ type: 'header', name, value }]);
          if ((p & SMFIP.NR_HDR) !== 0) continue;
          const v = await this.verdict(t, 'header', false, result);
          if (v !== null) return this.endMessage(result, v);
        }
      }
      if ((p & SMFIP.NOEOH) === 0) {
        this.sendMacros(SMFIM.EOH, 'N', macros);
        conn.send([{ type: 'eoh' }]);
        if ((p & SMFIP.NR_EOH) === 0) {
          const v = await this.verdict(t, 'end of headers', false, result);
          if (v !== null) return this.endMessage(result, v);
        }
      }
      this.sendMacros(SMFIM.EOM, 'B', macros);
      if ((p & SMFIP.NOBODY) === 0) {
        body: for (const b of m.body) {
          for (let off = 0; off < b.length; off += BODY_CHUNK) {
            conn.send([{ type: 'body', chunk: b.subarray(off, off + BODY_CHUNK) }]);
            if ((p & SMFIP.NR_BODY) !== 0) continue;
            const r = await this.read(t, 'body chunk', result);
            if (r.type === 'skip') break body;
            const v = this.finalOf(r, false);
            if (v === undefined) return this.endMessage(result, this.protocolError(r, 'body chunk'));
            if (v.kind !== 'continue') return this.endMessage(result, v);
          }
        }
      }
      this.sendMacros(SMFIM.EOM, 'E', macros);
      conn.send([{ type: 'eom' }]);
      for (;;) {
        const r = await this.read(t, 'end of message', result);
        const edit = editOf(r);
        if (edit !== undefined) {
          result.edits.push(edit);
          continue;
        }
        const v = this.finalOf(r, false);
        if (v === undefined) return this.endMessage(result, this.protocolError(r, 'end of message'));
        return this.endMessage(result, v.kind === 'accept' ? { kind: 'continue' } : v);
      }
    } catch (e) {
      result.edits = [];
      delete result.quarantine;
      result.verdict = this.failed(e);
      return result;
    }
  }

  /** The transaction ended without a message: the filter forgets its message state. */
  abort(): void {
    this.messageDone = false;
    if (!this.inMessage || this.state !== 'ready') return;
    this.inMessage = false;
    this.conn?.send([{ type: 'abort' }]);
  }

  /** The SMTP session is over. */
  quit(): void {
    this.conn?.quit();
    this.conn = undefined;
    if (this.state === 'ready' || this.state === 'new') this.state = 'off';
  }

  // --- internals ----------------------------------------------------------------------------

  private endMessage(result: MessageResult, v: Verdict): MessageResult {
    // After the end-of-message exchange libmilter has forgotten the message by itself; after an
    // earlier final reply it still holds it, and the next transaction starts with ABORT.
    result.verdict = v;
    this.inMessage = false;
    return result;
  }

  private async negotiate(): Promise<void> {
    const conn = this.conn as MilterConnection;
    conn.send([
      { type: 'optneg', version: MILTER_VERSION, actions: OFFER_ACTIONS, protocol: OFFER_PROTOCOL },
    ]);
    const r = await conn.next(this.settings.commandTimeoutMs, 'option negotiation');
    if (r.type !== 'optneg') throw new Error(`milter answered the negotiation with ${r.type}`);
    if (r.version < 2 || r.version > MILTER_VERSION)
      throw new Error(`milter speaks protocol version ${r.version}; this MTA speaks 2 to ${MILTER_VERSION}`);
    if ((r.actions & ~OFFER_ACTIONS) !== 0)
      throw new Error(
        `milter asks for actions 0x${r.actions.toString(16)} beyond 0x${OFFER_ACTIONS.toString(16)}`,
      );
    this.version = r.version;
    // Flags we did not offer are ignored: we would not honour them.
    this.protocol = r.protocol & OFFER_PROTOCOL;
    for (const [stage, names] of r.macros) {
      if (stage in this.macroLists)
        this.macroLists[stage as MacroStage] = names.split(/[\s,]+/).filter(Boolean);
    }
    this.state = 'ready';
  }

  private sendMacros(stage: MacroStage, cmd: string, src: MacroSource): void {
    const pairs: [string, string][] = [];
    for (const name of this.macroLists[stage]) {
      const v = src(name.startsWith('{') || name.length === 1 ? name : `{${name}}`);
      if (v !== undefined) pairs.push([name, v]);
    }
    if (pairs.length > 0) this.conn?.send([{ type: 'macro', stage: cmd, macros: pairs }]);
  }

  private async event(
    stage: MacroStage,
    cmd: string,
    command: MtaCommand,
    noSend: number,
    noReply: number,
    macros: MacroSource,
    connectionLevel: boolean,
  ): Promise<Verdict> {
    if (this.state !== 'ready') return this.idle();
    if (this.messageDone && !connectionLevel) return { kind: 'continue' };
    const conn = this.conn as MilterConnection;
    this.sendMacros(stage, cmd, macros);
    if ((this.protocol & noSend) !== 0) return { kind: 'continue' };
    conn.send([command]);
    if ((this.protocol & noReply) !== 0) return { kind: 'continue' };
    try {
      const v = await this.verdict(this.settings.commandTimeoutMs, command.type, connectionLevel, undefined);
      return v ?? { kind: 'continue' };
    } catch (e) {
      return this.failed(e);
    }
  }

  /** Reads to a decision for a stage; null means continue. */
  private async verdict(
    timeoutMs: number,
    what: string,
    connectionLevel: boolean,
    result: MessageResult | undefined,
  ): Promise<Verdict | null> {
    const r = await this.read(timeoutMs, what, result);
    const v = this.finalOf(r, connectionLevel);
    if (v === undefined) return this.protocolError(r, what);
    return v.kind === 'continue' ? null : v;
  }

  /** The next response, with progress reports and quarantine requests taken in passing. */
  private async read(
    timeoutMs: number,
    what: string,
    result: MessageResult | undefined,
  ): Promise<MilterResponse> {
    const conn = this.conn as MilterConnection;
    for (;;) {
      const r = await conn.next(timeoutMs, what);
      if (r.type === 'progress') continue;
      if (r.type === 'quarantine') {
        if (result !== undefined) result.quarantine = r.reason || 'quarantined by milter';
        continue;
      }
      return r;
    }
  }

  /** A final reply as a verdict (with its state change); undefined for an unexpected response. */
  private finalOf(r: MilterResponse, connectionLevel: boolean): Verdict | undefined {
    switch (r.type) {
      case 'continue':
        return { kind: 'continue' };
      case 'accept':
        if (connectionLevel) this.quit();
        else this.messageDone = true;
        return { kind: 'accept' };
      case 'discard':
        // Not meaningful for a connection (Postfix ignores it there too).
        if (connectionLevel) return { kind: 'continue' };
        this.messageDone = true;
        return { kind: 'discard' };
      case 'reject':
        return this.final(REJECT, connectionLevel);
      case 'tempfail':
        return this.final(TEMPFAIL, connectionLevel);
      case 'shutdown':
        return this.final(SHUTDOWN, true);
      case 'replycode': {
        const reply = parseReplyCode(r.text);
        if (reply === null) {
          this.log({ milter: this.settings.name, text: r.text }, 'milter sent a malformed reply code');
          return this.failed(new Error('malformed reply code'));
        }
        return this.final(reply, connectionLevel);
      }
      default:
        return undefined;
    }
  }

  private final(reply: SmtpReply, connectionLevel: boolean): Verdict {
    if (connectionLevel) {
      // A refused connection: the session keeps the reply, the filter is done with it.
      this.quit();
      this.state = 'off';
    }
    return { kind: 'reply', reply };
  }

  private protocolError(r: MilterResponse, what: string): Verdict {
    return this.failed(new Error(`unexpected response ${r.type} to ${what}`));
  }

  /** The default action's verdict, now and for the rest of the session. */
  private failed(e: unknown): Verdict {
    const why = e instanceof Error ? e.message : String(e);
    this.log({ milter: this.settings.name, err: why, action: this.settings.defaultAction }, 'milter failed');
    this.conn?.close();
    this.conn = undefined;
    this.inMessage = false;
    const a = this.settings.defaultAction;
    if (a === 'accept') {
      this.state = 'off';
      return { kind: 'continue' };
    }
    this.state = 'error';
    this.errorReply =
      a === 'reject' ? { code: 550, enhanced: '5.7.1', text: 'Service unavailable' } : TEMPFAIL;
    return { kind: 'reply', reply: this.errorReply };
  }

  private idle(): Verdict {
    if (this.state === 'error' && this.errorReply !== null) return { kind: 'reply', reply: this.errorReply };
    return { kind: 'continue' };
  }
}

function editOf(r: MilterResponse): MessageEdit | undefined {
  switch (r.type) {
    case 'addheader':
    case 'insheader':
    case 'chgheader':
    case 'replbody':
    case 'delrcpt':
      return r;
    case 'addrcpt':
      return { type: 'addrcpt', rcpt: r.rcpt, args: '' };
    case 'addrcpt_par':
      return { type: 'addrcpt', rcpt: r.rcpt, args: r.args };
    case 'chgfrom':
      return r;
    default:
      return undefined;
  }
}
