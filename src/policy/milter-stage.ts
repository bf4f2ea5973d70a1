// The milters ([[milter]]) as a session filter and an end-of-DATA stage (pipeline.ts, step 3):
// one MilterChain per SMTP session, opened at connect and closed at disconnect, fed with the
// session's facts as Sendmail macros ({client_addr}, {auth_authen}, {rcpt_addr}, i, j, ...).
// Invariant: the chain belongs to exactly one session (keyed on its context object) and is
// forgotten at disconnect; messages without a session (local submissions) skip the milters.
// Fails: never throws; a failing milter's default_action decides (milter/client.ts).
import type { MilterConfig } from '../config/index.js';
import { MilterChain } from '../milter/chain.js';
import type { MacroSource, MilterSettings } from '../milter/client.js';
import { bytesOf, type ConnectFamily } from '../milter/protocol.js';
import type { SessionContext, SmtpReply } from '../smtp/server/hooks.js';
import type { Clock } from '../util/clock.js';
import type { SessionFilter } from './filters.js';
import type { AcceptStage } from './pipeline.js';
import { domainOf } from '../util/domain.js';

export interface MilterStageOptions {
  hostname: string;
  clock: Clock;
  /** The delivery agent a recipient domain goes to ({rcpt_mailer}): "local", "lmtp" or "smtp". */
  mailerOf(domain: string): string;
  warn(obj: object, msg: string): void;
}

interface SessionState {
  chain: MilterChain;
  /** Sender of the transaction being built (the MAIL event comes before the session has one). */
  sender?: string;
  rcpt?: string;
}

/** 127.0.0.1 for an IPv4-mapped IPv6 address, as filters expect. */
function plainIp(ip: string): { address: string; family: ConnectFamily } {
  if (ip.startsWith('::ffff:') && ip.includes('.')) return { address: ip.slice(7), family: '4' };
  return { address: ip, family: ip.includes(':') ? '6' : '4' };
}

function milterSettings(c: MilterConfig): MilterSettings {
  return {
    name: c.name,
    address: c.address,
    connectTimeoutMs: c.connectTimeoutMs,
    commandTimeoutMs: c.commandTimeoutMs,
    contentTimeoutMs: c.contentTimeoutMs,
    defaultAction: c.defaultAction,
  };
}

export function makeMilterStage(
  milters: readonly MilterConfig[],
  o: MilterStageOptions,
): { filter: SessionFilter; stage: AcceptStage } {
  const settings = milters.map(milterSettings);
  const sessions = new WeakMap<SessionContext, SessionState>();

  const macros =
    (ctx: SessionContext, st: SessionState | undefined, messageId?: string): MacroSource =>
    (name) => {
      const c = ctx.client;
      switch (name) {
        case 'j':
        case '{daemon_name}':
          return o.hostname;
        case 'v':
          return 'logmta';
        case '{daemon_addr}':
          return ctx.localAddress || undefined;
        case '{daemon_port}':
          return String(ctx.localPort);
        case '_':
          return `unknown [${plainIp(c.ip).address}]`;
        case '{client_addr}':
          return plainIp(c.ip).address;
        case '{client_port}':
          return String(c.port);
        case '{client_name}':
        case '{client_ptr}':
          return 'unknown';
        case '{tls_version}':
          return c.tls?.protocol;
        case '{cipher}':
          return c.tls?.cipher;
        case 'i':
          return messageId ?? ctx.messageId;
        case '{auth_type}':
          return c.auth === undefined ? undefined : c.authMechanism;
        case '{auth_authen}':
          return c.auth === undefined ? undefined : bytesOf(c.auth);
        case '{mail_addr}': {
          const s = st?.sender ?? ctx.sender;
          return s === undefined ? undefined : bytesOf(s);
        }
        case '{mail_mailer}':
          return st?.sender !== undefined || ctx.sender !== undefined ? 'smtp' : undefined;
        case '{rcpt_addr}':
          return st?.rcpt === undefined ? undefined : bytesOf(st.rcpt);
        case '{rcpt_host}':
          return st?.rcpt === undefined ? undefined : bytesOf(domainOf(st.rcpt));
        case '{rcpt_mailer}':
          return st?.rcpt === undefined ? undefined : o.mailerOf(domainOf(st.rcpt));
        default:
          return undefined;
      }
    };

  const args = (address: string, params: readonly string[] | undefined): string[] => [
    bytesOf(`<${address}>`),
    ...(params ?? []).map(bytesOf),
  ];

  const filter: SessionFilter = {
    connect(ctx): Promise<SmtpReply | null> {
      const st: SessionState = { chain: new MilterChain(settings, o.clock, o.warn) };
      sessions.set(ctx, st);
      const ip = plainIp(ctx.client.ip);
      return st.chain.connect(
        { hostname: `[${ip.address}]`, family: ip.family, port: ctx.client.port, address: ip.address },
        macros(ctx, st),
      );
    },
    checkHelo(name, ctx) {
      const st = sessions.get(ctx);
      return st ? st.chain.helo(bytesOf(name), macros(ctx, st)) : null;
    },
    checkSender(address, ctx, params) {
      const st = sessions.get(ctx);
      if (!st) return null;
      st.sender = address;
      return st.chain.mail(args(address, params), macros(ctx, st)).finally(() => {
        delete st.sender;
      });
    },
    checkRecipient(address, ctx, params) {
      const st = sessions.get(ctx);
      if (!st) return null;
      st.rcpt = address;
      return st.chain.rcpt(args(address, params), macros(ctx, st)).finally(() => {
        delete st.rcpt;
      });
    },
    checkData(ctx) {
      const st = sessions.get(ctx);
      return st ? st.chain.data(macros(ctx, st)) : null;
    },
    abort(ctx) {
      sessions.get(ctx)?.chain.abort();
    },
    disconnect(ctx) {
      sessions.get(ctx)?.chain.quit();
      sessions.delete(ctx);
    },
  };

  const stage: AcceptStage = {
    name: 'milter',
    async run(m, ctx) {
      const st = ctx === undefined ? undefined : sessions.get(ctx);
      if (ctx === undefined || st === undefined) return null;
      const v = await st.chain.message(m, macros(ctx, st, m.id));
      if (v !== null && 'discard' in v) o.warn({ id: m.id, why: v.discard }, 'message discarded by milter');
      return v;
    },
  };
  return { filter, stage };
}
