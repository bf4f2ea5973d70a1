// Local submission through the control socket (what `logmta sendmail` hands over): validates
// the envelope, prepends our Received: header, checks recipients with the same policy hooks as
// SMTP (local users, safe mailbox names; relaying is allowed — the socket's owner is trusted,
// as a local sendmail is), and accepts through the same hook as SMTP, so the message gets the
// same first destinations (ODMR domains straight to their held lane).
// Invariant: resolves only when the message is durable (the hook's contract); a refused
// recipient refuses the whole message (sendmail's caller then sees a non-zero exit), nothing is
// queued for the others.
import { MtaError } from '../errors.js';
import { checkMailbox } from '../smtp/protocol/address.js';
import type { ServerHooks, SessionContext } from '../smtp/server/hooks.js';
import { BufferedData } from '../smtp/server/message-data.js';
import { rfc5322Date } from '../smtp/protocol/date.js';
import type { Clock } from '../util/clock.js';
import { addressKey } from '../util/domain.js';

export interface InjectRequest {
  /** Return path; '' for the null sender. */
  sender: string;
  recipients: string[];
  /** The message with CRLF line ends (not dot-stuffed). */
  data: Buffer;
  /** Who submitted it (the local user name, for the Received: header). */
  user?: string;
}

export type Injector = (req: InjectRequest) => Promise<{ id: string }>;

export interface InjectorOptions {
  hostname: string;
  hooks: ServerHooks;
  clock: Clock;
  maxMessageSize: number;
}

const SAFE_USER = /^[A-Za-z0-9._-]{1,64}$/;

function refuse(code: string, message: string, smtp: number, enhanced: string): MtaError {
  return new MtaError(code, 'permanent', message, { smtp: { code: smtp, enhanced } });
}

export function makeInjector(opts: InjectorOptions): Injector {
  return async (req) => {
    if (req.sender !== '' && checkMailbox(req.sender, true) !== 'ok')
      throw refuse('INJECT_BAD_SENDER', `bad sender address <${req.sender}>`, 553, '5.1.7');
    if (req.recipients.length === 0) throw refuse('INJECT_NO_RECIPIENTS', 'no recipients', 554, '5.5.1');
    if (req.data.length > opts.maxMessageSize)
      throw refuse('INJECT_TOO_BIG', `message larger than ${opts.maxMessageSize} bytes`, 552, '5.3.4');
    const user = req.user !== undefined && SAFE_USER.test(req.user) ? req.user : 'unknown';
    const ctx: SessionContext = {
      // A trusted local submission: relay allowed as for an authenticated client.
      client: { ip: '127.0.0.1', port: 0, helo: 'localhost', auth: `local:${user}` },
      localAddress: '127.0.0.1',
      localPort: 0,
      loopback: true,
      submission: false,
      sender: req.sender,
      recipientCount: 0,
      messageId: undefined,
    };
    const recipients: Array<{ address: string }> = [];
    const seen = new Set<string>();
    for (const r of req.recipients) {
      // A recipient named twice (To: and Cc: of sendmail -t) is delivered once, as over SMTP.
      if (seen.has(addressKey(r))) continue;
      seen.add(addressKey(r));
      if (checkMailbox(r, true) !== 'ok')
        throw refuse('INJECT_BAD_RECIPIENT', `bad recipient <${r}>`, 553, '5.1.3');
      const verdict = await opts.hooks.checkRecipient?.(r, { ...ctx, recipientCount: recipients.length });
      if (verdict) {
        const text = typeof verdict.text === 'string' ? verdict.text : verdict.text.join(' ');
        const kind = verdict.code >= 500 ? 'permanent' : 'transient';
        throw new MtaError('INJECT_RECIPIENT_REFUSED', kind, `${verdict.code} ${text}`, {
          smtp: {
            code: verdict.code,
            enhanced: verdict.enhanced ?? (kind === 'permanent' ? '5.1.1' : '4.3.0'),
          },
        });
      }
      recipients.push({ address: r });
    }
    const id = opts.hooks.newMessageId();
    const now = opts.clock.now();
    const received =
      `Received: (from ${user}) by ${opts.hostname} (logmta) with local id ${id}` +
      (recipients.length === 1 ? `\r\n\tfor <${recipients[0]!.address}>` : '') +
      `; ${rfc5322Date(now)}\r\n`;
    const head = Buffer.from(received);
    const res = await opts.hooks.accept({
      id,
      sender: req.sender,
      recipients,
      params: {},
      data: new BufferedData([head, req.data]),
      size: head.length + req.data.length,
      client: { ...ctx.client },
      receivedAt: now,
      received: head,
    });
    return { id: res.queueId };
  };
}
