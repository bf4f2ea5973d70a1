// What mail this host takes, and from whom: the SMTP server's hooks built from the
// configuration. Relay control (never an open relay), known local users, AUTH accounts and the
// MAIL FROM addresses each may use, and
// the hand-over to the queue with each recipient's first destination (ODMR domains go straight
// to their held lane; a quarantined message to the hold lane). The end-of-DATA stages
// (pipeline.ts) run before the hand-over. The server decides nothing of this itself.
import type { Config } from '../config/index.js';
import { cidrListContains } from '../config/index.js';
import type { Router } from '../delivery/router.js';
import { addressKey, domainOf, localPartOf } from '../util/domain.js';
import type { MtaError } from '../errors.js';
import {
  type AcceptInput,
  DataSpool,
  type Destination,
  formatId,
  type IdSource,
  parseId,
  type RecipientInfo,
} from '../queue/index.js';
import { reply } from '../smtp/protocol/reply.js';
import type { MessageSink, ReceivedMessage, ServerHooks, SessionContext } from '../smtp/server/hooks.js';
import { secretEquals } from '../util/secret-equal.js';
import { matchesAddress } from './access.js';
import { type AcceptStage, type DraftMessage, refusal, runStages } from './pipeline.js';
import { collectData } from '../smtp/server/message-data.js';
import { hasRoutingTricks, isMailboxName } from '../util/local-part.js';

/**
 * What the hooks ask of the queue: the daemon's Queues on the main thread; in the SMTP session
 * thread, its door to them (sessions/thread-main.ts), which asks the main thread.
 */
export interface HookQueue {
  readonly budget: { readonly over: boolean; add(n: number): void; sub(n: number): void };
  /** Why new mail is refused now (a full disk, a failed fsync), or undefined. */
  refusal(): MtaError | undefined;
  spool(msgId: number): MessageSink;
  /** Whether `data` is a spool of this queue's, queued as it is (not read back first). */
  isSpool?(data: MessageSink): boolean;
  /** Resolves once the message is durable. */
  accept(input: Omit<AcceptInput, 'data'> & { data: readonly Buffer[] | MessageSink }): Promise<{ id: string }>;
}

export function makeServerHooks(
  config: Config,
  router: Router,
  queues: HookQueue,
  ids: IdSource,
  stages: readonly AcceptStage[] = [],
): ServerHooks {
  const users = new Map(config.users.map((u) => [u.name, u.password]));
  // Postfix's reject_sender_login_mismatch, for the users that list their addresses.
  const owned = new Map(config.users.flatMap((u) => (u.addresses ? [[u.name, u.addresses] as const] : [])));
  const knownLocal = new Map(
    config.local.map((l) => [l.domain, l.users ? new Set(l.users.map((u) => u.toLowerCase())) : undefined]),
  );

  const postmaster = config.local[0] ? `postmaster@${config.local[0].domain}` : undefined;
  const aliases = new Map(config.local.map((l) => [l.domain, l.aliases]));

  function relayAllowed(ctx: SessionContext): boolean {
    return ctx.client.auth !== undefined || cidrListContains(config.smtp.relayNetworks, ctx.client.ip);
  }

  // Domains whose mail we take from anyone besides the local ones: smtp.relay_domains (backup
  // MX) and the domains we hold for ETRN/ODMR customers. A [[route]] is where mail goes, never
  // a permission: routing gmail.com through a smarthost must not open the relay for gmail.com.
  const relayDomains = new Set(config.smtp.relayDomains);
  const acceptedFromAnyone = (domain: string): boolean =>
    relayDomains.has(domain) ||
    router.etrnOf(domain) !== undefined ||
    router.odmrDomainOf(domain) !== undefined;
  // Domains with a [[route]] of their own (not the catch-all): what an ODMR customer collects
  // and passes on.
  const routed = new Set(config.routes.map((r) => r.domain).filter((d) => d !== '*'));

  return {
    newMessageId: () => formatId(ids.next()),

    checkRecipient(address: string, ctx: SessionContext) {
      // RFC 5321 4.5.1: the bare <postmaster> must be accepted; it goes to the postmaster of
      // the first local domain (rewritten at accept time).
      if (address.toLowerCase() === 'postmaster') {
        return postmaster ? null : reply(550, '5.1.1', '<postmaster>: no local domain to deliver to');
      }
      const domain = domainOf(address);
      const local = localPartOf(address);
      if (router.isLocal(domain)) {
        // %-hacks, bang paths and quoted local parts are not mailbox names here.
        if (!isMailboxName(local)) {
          return reply(550, '5.1.3', `<${address}>: mailbox name not allowed`);
        }
        const list = knownLocal.get(domain);
        // RFC 5321 4.5.1: postmaster@ every domain we deliver for is accepted, listed or not.
        const user = local.toLowerCase();
        if (list && !list.has(user) && user !== 'postmaster' && !aliases.get(domain)?.has(user))
          return reply(550, '5.1.1', `<${address}>: user unknown`);
        return null;
      }
      if (relayAllowed(ctx)) return null;
      const plain = !hasRoutingTricks(local);
      if (acceptedFromAnyone(domain) && plain) return null;
      if (ctx.odmrCustomer) {
        // Our provider, after our ATRN, sends the mail of our account: a domain we route onward
        // is taken; one we cannot deliver stays held there (450), where a 5xx would make the
        // provider bounce the customer's own mail.
        if (routed.has(domain) && plain) return null;
        return reply(
          450,
          '4.7.1',
          `<${address}>: this host takes no mail for ${domain} (neither a local domain nor routed); leave it held`,
        );
      }
      return reply(554, '5.7.1', `<${address}>: relay access denied`);
    },

    // An authenticated user with `addresses` may use only those as MAIL FROM; the null sender
    // stays allowed (MDNs and vacation replies are sent from <>), as in Postfix.
    ...(owned.size > 0
      ? {
          checkSender(address: string, ctx: SessionContext) {
            const user = ctx.client.auth;
            const mine = user === undefined ? undefined : owned.get(user);
            if (mine === undefined || address === '' || matchesAddress(mine, address)) return null;
            return reply(553, '5.7.1', `<${address}>: Sender address rejected: not owned by user ${user}`);
          },
        }
      : {}),

    // AUTH only where there are accounts ([[user]]): without any, it is neither offered nor
    // taken (Postfix's smtpd_sasl_auth_enable = no), so a scanner finds nothing to guess at.
    ...(users.size > 0
      ? {
          verifyPassword(user: string, password: string) {
            const p = users.get(user);
            return p !== undefined && secretEquals(p, password);
          },
          cramSecret(user: string) {
            return users.get(user) ?? null;
          },
        }
      : {}),

    admitTransaction() {
      if (queues.budget.over)
        return reply(452, '4.3.1', 'Insufficient system storage: too much mail in memory, try again later');
      // A full disk or a failed fsync: say so at MAIL, before the client sends its data.
      const refused = queues.refusal()?.smtp;
      return refused
        ? reply(refused.code, refused.enhanced, String(refused.text ?? 'try again later'))
        : null;
    },

    openData(id: string) {
      // The id comes from newMessageId above; anything else gets one of our own.
      return queues.spool(parseId(id) ?? ids.next());
    },

    async accept(received: ReceivedMessage, ctx?: SessionContext): Promise<{ queueId: string }> {
      if (stages.length === 0)
        return queueIt(
          received,
          received.data instanceof DataSpool || queues.isSpool?.(received.data)
            ? received.data
            : await collectData(received.data),
        );
      // The stages (auth checks, milters, DKIM signing) see and edit the whole message in memory:
      // it is read back from where it was spooled (counted in the memory budget meanwhile) and
      // queued whole as they leave it. Without stages the spool goes to the queue as it is.
      const m: DraftMessage = { ...received, data: (await collectData(received.data)).slice() };
      const held = m.size;
      queues.budget.add(held);
      try {
        received.data.abort();
        const v = await runStages(stages, m, ctx);
        if (v !== null) {
          if ('reply' in v) throw refusal('policy', v.reply);
          // Discarded by a filter: the client is told it was taken, and nothing is queued.
          return { queueId: m.id };
        }
        if (m.recipients.length === 0) return { queueId: m.id };
        return await queueIt(m, m.data);
      } finally {
        queues.budget.sub(held);
      }
    },
  };

  /**
   * A recipient of a local domain named by one of its `aliases` becomes the alias's targets, each
   * with the original address as its ORCPT (RFC 3461 4.2) unless the client gave one; any other
   * recipient gives undefined.
   */
  function expandAlias(info: RecipientInfo): RecipientInfo[] | undefined {
    const domain = domainOf(info.address);
    const targets = aliases.get(domain)?.get(localPartOf(info.address).toLowerCase());
    if (targets === undefined) return undefined;
    const orcpt = info.orcpt ?? (/^[\x21-\x7e]+$/.test(info.address) ? `rfc822;${info.address}` : undefined);
    return targets.map((t) => {
      const x: RecipientInfo = { address: `${t}@${domain}` };
      if (info.notify) x.notify = info.notify.slice();
      if (orcpt !== undefined) x.orcpt = orcpt;
      return x;
    });
  }

  /** Hands a message to the queue: resolves once it is durable. */
  async function queueIt(
    m: Omit<DraftMessage, 'data'>,
    data: readonly Buffer[] | MessageSink,
  ): Promise<{ queueId: string }> {
    const recipients: RecipientInfo[] = [];
    const taken = new Set<string>(); // recipients as the client gave them
    const byAlias = new Set<string>(); // recipients an alias gave
    for (const r of m.recipients) {
      const address = postmaster && r.address.toLowerCase() === 'postmaster' ? postmaster : r.address;
      const info: RecipientInfo = { address };
      if (r.notify) info.notify = r.notify.slice();
      if (r.orcpt) info.orcpt = `${r.orcpt.type};${r.orcpt.address}`;
      // Two aliases of one mailbox, or an alias and its target, give one recipient; repeats of
      // what the client wrote were answered by the session already (their DSN parameters may differ).
      const expanded = expandAlias(info);
      if (expanded === undefined) {
        if (byAlias.has(addressKey(address))) continue;
        taken.add(addressKey(address));
        recipients.push(info);
        continue;
      }
      for (const x of expanded) {
        const key = addressKey(x.address);
        if (taken.has(key) || byAlias.has(key)) continue;
        byAlias.add(key);
        recipients.push(x);
      }
    }
    const hold = m.hold;
    const destinations: Destination[] = recipients.map((r) => {
      if (hold !== undefined) return { kind: 'hold' };
      const odmr = router.heldHere(domainOf(r.address));
      return odmr ? { kind: 'held', domain: odmr } : { kind: 'new' };
    });
    const client: Record<string, string> = { ip: m.client.ip };
    if (m.client.helo) client.helo = m.client.helo;
    if (m.client.auth) client.auth = m.client.auth;
    if (m.client.tls) client.tls = m.client.tls.protocol;
    if (hold !== undefined) client.quarantine = hold;
    const input: Parameters<HookQueue['accept']>[0] = {
      // Streamed into a spool of ours as it arrived, or whole (local injection, stages).
      data,
      sender: m.sender,
      recipients,
      destinations,
      client,
      arrival: m.receivedAt,
    };
    const id = parseId(m.id);
    if (id !== undefined) input.msgId = id;
    if (m.params.ret) input.ret = m.params.ret;
    if (m.params.envid !== undefined) input.envid = m.params.envid;
    if (m.params.smtputf8) input.smtputf8 = true;
    if (m.params.body) input.body = m.params.body;
    const r = await queues.accept(input);
    return { queueId: r.id };
  }
}
