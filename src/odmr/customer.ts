// logmta as an ODMR customer (RFC 2645 §4): connect to the provider as an SMTP client (EHLO,
// AUTH CRAM-MD5: smtp/client), send ATRN, and on 250 turn the socket around (turnaround.ts) and
// become the SMTP server on it — greet with 220 and run an ordinary server session (the daemon's
// hooks), so collected mail enters our queue with the usual rule: 250 after the final dot only
// once it is durable. The session ends when the provider QUITs.
// Invariants: the CRAM-MD5 secret never crosses the wire; no mail is accepted before the
// provider's 250 to ATRN; a provider that speaks before our 220 is a protocol error.
// Fails: collect() rejects with an MtaError for connection, authentication and ATRN refusals
// (code ODMR_*, with the provider's reply); 453 (no mail) is a normal result, not an error.

import { MtaError } from '../errors.js';
import { type Reply, SmtpClient, SmtpClientError } from '../smtp/client/index.js';
import { describeReply } from '../smtp/protocol/reply.js';
import type { ServerHooks, ServerLogger } from '../smtp/server/hooks.js';
import type { SessionOptions } from '../smtp/server/options.js';
import { type Clock, systemClock } from '../util/clock.js';
import { Turnaround } from './turnaround.js';

export interface CustomerOptions {
  host: string;
  port: number;
  user: string;
  password: string;
  /** Domains to ask for; undefined or empty = a bare ATRN (every domain of the account). */
  domains?: readonly string[];
  /** Server-role session options (hostname, limits); hostname is also our EHLO name. */
  session: SessionOptions;
  /** The hooks that take the mail (the daemon's: policy and queue). */
  hooks: ServerHooks;
  clock?: Clock;
  logger?: ServerLogger;
  /** Bound on each step before the turnaround (default 60 s). */
  timeoutMs?: number;
}

export interface CollectResult {
  /** 'received': the turnaround happened; 'no-mail': the provider answered 453. */
  status: 'received' | 'no-mail';
  /** Messages accepted (durable) from the provider. */
  messages: number;
  /**
   * 'received' only: whether the provider ended the session with QUIT. False when the
   * connection was lost before (a line that dropped, a provider that died): what was not
   * accepted stays held at the provider for the next poll.
   */
  complete?: boolean;
}

/** One ODMR poll: resolves when the provider has ended the reversed session. */
export async function collect(o: CustomerOptions): Promise<CollectResult> {
  const clock = o.clock ?? systemClock;
  const ms = o.timeoutMs ?? 60_000;
  let client: SmtpClient;
  try {
    // Greeting, EHLO and AUTH as any SMTP client does them; only CRAM-MD5, so the secret never
    // crosses the wire, and no STARTTLS (the provider's mail comes over this session).
    client = await SmtpClient.connect(o.host, o.port, {
      name: o.session.hostname,
      clock,
      tls: { mode: 'none' },
      auth: { user: o.user, pass: o.password, mechanisms: ['CRAM-MD5'] },
      timeouts: { connect: ms, greeting: ms, command: ms, quit: ms },
    });
  } catch (e) {
    throw handshakeError(e, o);
  }
  let turned: Turnaround;
  try {
    const list = o.domains && o.domains.length > 0 ? ` ${o.domains.join(',')}` : '';
    const r = await client.connection.send(`ATRN${list}\r\n`, ms, 'ATRN reply');
    if (r.code === 453) {
      await client.quit();
      return { status: 'no-mail', messages: 0 };
    }
    if (r.code !== 250) throw refusal('ODMR_ATRN', 'ATRN', r);
    // The turnaround: from here on this socket is an SMTP server connection of ours.
    turned = Turnaround.fromClient(client, o.host);
  } catch (e) {
    client.close();
    throw e instanceof MtaError && e.code.startsWith('ODMR_')
      ? e
      : new MtaError('ODMR_ATRN', 'transient', `ATRN: ${e instanceof Error ? e.message : String(e)}`, {
          cause: e,
        });
  }
  const { messages, quit } = await turned.serve({
    session: o.session,
    hooks: o.hooks,
    clock,
    logger: o.logger,
  });
  return { status: 'received', messages, complete: quit };
}

function refusal(code: string, what: string, r: Reply): MtaError {
  const permanent = r.code >= 500;
  return new MtaError(code, permanent ? 'permanent' : 'transient', `${what} refused: ${describeReply(r)}`, {
    smtp: { code: r.code, enhanced: r.enhanced ?? (permanent ? '5.0.0' : '4.0.0') },
  });
}

/**
 * The client's handshake error as the customer's (ODMR_CONNECT, _GREETING, _EHLO, _AUTH). A
 * refused AUTH (5xx) is permanent: the account or its secret is wrong, polling again will not help.
 */
function handshakeError(e: unknown, o: CustomerOptions): MtaError {
  if (!(e instanceof SmtpClientError)) {
    return new MtaError('ODMR_CONNECT', 'transient', `${o.host}[${o.port}]: ${String(e)}`, { cause: e });
  }
  const stage =
    e.stage === 'connect'
      ? 'CONNECT'
      : e.stage === 'greeting'
        ? 'GREETING'
        : e.stage === 'auth'
          ? 'AUTH'
          : 'EHLO';
  const cause = e.cause instanceof MtaError ? e.cause : undefined;
  const code = e.reply?.code ?? (stage === 'AUTH' ? cause?.smtp?.code : undefined);
  const permanent = code !== undefined && code >= 500;
  return new MtaError(`ODMR_${stage}`, permanent ? 'permanent' : 'transient', e.message, {
    smtp: (e.reply ? e.smtp : cause?.smtp) ?? { code: 451, enhanced: '4.4.2' },
    cause: e,
  });
}
