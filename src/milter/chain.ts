// The configured milters for one SMTP session, in order. Each SMTP stage asks them in turn and
// the first refusal wins (later filters do not see that event, as Postfix does); at the end of
// the message each filter sees the message as the filters before it left it, and its edits
// (headers, body, sender, recipients, quarantine) are applied to the draft before the next one.
// Invariant: edits only ever touch the draft the pipeline hands in; nothing reaches the queue
// unless every filter let the message through.
// Fails: never rejects (MilterClient turns failures into default-action verdicts).
import { parseRcptArgs } from '../smtp/protocol/params.js';
import type { RecipientEntry, SmtpReply } from '../smtp/server/hooks.js';
import type { Clock } from '../util/clock.js';
import {
  MilterClient,
  type MacroSource,
  type MessageEdit,
  type MilterSettings,
  type Verdict,
} from './client.js';
import { applyHeaderEdit, joinMessage, normaliseBody, splitMessage } from './message.js';
import { type ConnectFamily, textOf } from './protocol.js';

/** The part of a pipeline draft that filters may change. */
export interface MilterDraft {
  sender: string;
  recipients: RecipientEntry[];
  data: Buffer[];
  size: number;
  received?: Buffer;
  hold?: string;
}

export type ChainVerdict = null | { reply: SmtpReply } | { discard: string };

const unbracket = (a: string): string => {
  const t = a.trim();
  return t.startsWith('<') && t.endsWith('>') ? t.slice(1, -1) : t;
};

export class MilterChain {
  private readonly clients: MilterClient[];
  /** A filter asked to discard the message at an envelope stage. */
  private discard: string | undefined;

  constructor(
    settings: readonly MilterSettings[],
    clock: Clock,
    private readonly log: (obj: object, msg: string) => void,
  ) {
    this.clients = settings.map((s) => new MilterClient(s, clock, log));
  }

  connect(
    info: { hostname: string; family: ConnectFamily; port: number; address: string },
    macros: MacroSource,
  ): Promise<SmtpReply | null> {
    return this.each((c) => c.connect(info, macros));
  }

  helo(name: string, macros: MacroSource): Promise<SmtpReply | null> {
    return this.each((c) => c.helo(name, macros));
  }

  mail(args: string[], macros: MacroSource): Promise<SmtpReply | null> {
    this.discard = undefined;
    return this.each((c) => c.mail(args, macros));
  }

  rcpt(args: string[], macros: MacroSource): Promise<SmtpReply | null> {
    return this.each((c) => c.rcpt(args, macros));
  }

  data(macros: MacroSource): Promise<SmtpReply | null> {
    return this.each((c) => c.data(macros));
  }

  /** End of message: every filter in order, each seeing the previous ones' edits. */
  async message(d: MilterDraft, macros: MacroSource): Promise<ChainVerdict> {
    if (this.discard !== undefined) return { discard: this.discard };
    for (const c of this.clients) {
      if (!c.active) {
        const idle = await c.message({ fields: [], separator: false, body: [] }, macros);
        if (idle.verdict.kind === 'reply') return { reply: idle.verdict.reply };
        continue;
      }
      const split = splitMessage(d.data, d.received);
      const r = await c.message(split, macros);
      if (r.verdict.kind === 'reply') return { reply: r.verdict.reply };
      if (r.verdict.kind === 'discard') return { discard: `discarded by milter ${c.settings.name}` };
      const body: Buffer[] = [];
      let replaced = false;
      for (const e of r.edits) {
        if (e.type === 'replbody') {
          replaced = true;
          body.push(e.chunk);
        } else if (e.type === 'addheader' || e.type === 'insheader' || e.type === 'chgheader') {
          applyHeaderEdit(split.fields, e, r.leadingSpace);
        } else this.envelopeEdit(d, e, c.settings.name);
      }
      if (replaced) {
        split.body = [normaliseBody(body)];
        split.separator = true;
      }
      if (r.edits.length > 0) {
        d.data = joinMessage(split);
        d.size = d.data.reduce((n, b) => n + b.length, 0);
      }
      if (r.quarantine !== undefined) d.hold = `milter ${c.settings.name}: ${r.quarantine}`;
    }
    return null;
  }

  abort(): void {
    for (const c of this.clients) c.abort();
  }

  quit(): void {
    for (const c of this.clients) c.quit();
  }

  private async each(ask: (c: MilterClient) => Promise<Verdict>): Promise<SmtpReply | null> {
    for (const c of this.clients) {
      const v = await ask(c);
      if (v.kind === 'reply') return v.reply;
      if (v.kind === 'discard') {
        this.discard = `discarded by milter ${c.settings.name}`;
        return null;
      }
    }
    return null;
  }

  private envelopeEdit(
    d: MilterDraft,
    e: Exclude<MessageEdit, { type: 'replbody' | 'addheader' | 'insheader' | 'chgheader' }>,
    who: string,
  ): void {
    if (e.type === 'chgfrom') {
      d.sender = unbracket(textOf(e.from));
      if (e.args !== '')
        this.log({ milter: who, args: e.args }, 'milter sender change: ESMTP arguments ignored');
      return;
    }
    const address = unbracket(textOf(e.rcpt));
    if (e.type === 'delrcpt') {
      const a = address.toLowerCase();
      d.recipients = d.recipients.filter((r) => r.address.toLowerCase() !== a);
      return;
    }
    const entry: RecipientEntry = { address };
    if (e.args !== '') {
      const p = parseRcptArgs(`TO:<${address}> ${textOf(e.args)}`, true);
      if (p.ok) {
        if (p.params.notify !== undefined) entry.notify = p.params.notify;
        if (p.params.orcpt !== undefined) entry.orcpt = p.params.orcpt;
      } else this.log({ milter: who, args: e.args }, 'milter recipient: ESMTP arguments ignored');
    }
    d.recipients.push(entry);
  }
}
