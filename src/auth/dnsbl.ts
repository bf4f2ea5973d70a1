// DNS blocklists (RFC 5782): the client's address, reversed (IPv4 octets, IPv6 nibbles), is looked
// up under each [[dnsbl]] zone; an A answer in the list's match set means "listed", and the
// client is refused with a reply naming the list (and the list's TXT reason, when it has one).
// Checked at connect (before the greeting; then every MAIL gets the reply) or at RCPT.
// Invariants: clients in relay_networks are never checked, nor, at RCPT, authenticated ones or a
// recipient an [[access]] permit rule let through; a lookup that fails (timeout, SERVFAIL) does
// not list anyone (fail open, logged); lists are asked in parallel and the first listed one in
// configuration order is named.

import net from 'node:net';
import type { Cidr } from '../config/index.js';
import { cidrListContains } from '../config/index.js';
import type { DnsblConfig } from '../config/schema.js';
import { type DnsResolver, isNoRecords } from '../dns/types.js';
import type { Logger } from '../log.js';
import type { SessionFilter } from '../policy/filters.js';
import type { SessionContext, SmtpReply } from '../smtp/server/hooks.js';

/** The name to look up for `ip` under `zone` ("2.0.0.127.zone"), or undefined for a non-address. */
export function dnsblName(ip: string, zone: string): string | undefined {
  const bare = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (net.isIPv4(bare)) return `${bare.split('.').reverse().join('.')}.${zone}`;
  if (!net.isIPv6(bare)) return undefined;
  // Expand to 32 hex digits, then one label per nibble, least significant first.
  const [head = '', tail] = bare.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [
    ...h,
    ...new Array<string>(tail === undefined ? 0 : 8 - h.length - t.length).fill('0'),
    ...t,
  ];
  const hex = groups.map((g) => g.padStart(4, '0')).join('');
  return `${[...hex].reverse().join('.')}.${zone}`;
}

/** Spamhaus-style error answers (127.255.255.0/24: "query refused", "rate limited"), never a listing. */
const ERROR_ANSWER = /^127\.255\.255\.\d+$/;

/** Whether the A records say "listed": any of `match` if given, else any 127.0.0.0/8 that is not an error code. */
export function isListed(answers: readonly string[], match: readonly string[] | undefined): boolean {
  if (match !== undefined) return answers.some((a) => match.includes(a));
  return answers.some((a) => a.startsWith('127.') && !ERROR_ANSWER.test(a));
}

const clean = (s: string) => s.replace(/[^\x20-\x7e]/g, ' ').slice(0, 200);

export interface DnsblOptions {
  lists: readonly DnsblConfig[];
  resolver: DnsResolver;
  relayNetworks: readonly Cidr[];
  logger: Logger;
  /** Told every refusal (metrics). */
  onListed?: (zone: string) => void;
  /** Whether an [[access]] permit rule let the recipient being checked through: then no lookup. */
  permitted?: (ctx: SessionContext) => boolean;
}

/** The first list (in order) that lists `ip`, with its reason, or null. */
async function lookup(ip: string, lists: readonly DnsblConfig[], o: DnsblOptions): Promise<SmtpReply | null> {
  const results = await Promise.all(
    lists.map(async (l) => {
      const name = dnsblName(ip, l.zone);
      if (name === undefined) return false;
      try {
        return isListed(await o.resolver.resolve4(name), l.match) ? name : false;
      } catch (e) {
        if (!isNoRecords(e))
          o.logger.warn({ ip, zone: l.zone, err: e }, 'DNSBL lookup failed; not counted as listed');
        return false;
      }
    }),
  );
  const i = results.findIndex((r) => r !== false);
  if (i < 0) return null;
  const list = lists[i] as DnsblConfig;
  let reason = '';
  try {
    const txt = await o.resolver.resolveTxt(results[i] as string);
    if (txt[0]) reason = `; ${clean(txt[0].join(''))}`;
  } catch {
    // no reason published: the list's name says enough
  }
  o.logger.info({ ip, zone: list.zone }, 'client listed in a DNSBL');
  o.onListed?.(list.zone);
  return {
    code: 554,
    enhanced: '5.7.1',
    text: `Service unavailable; client [${ip.replace(/^::ffff:(?=\d)/i, '')}] blocked using ${list.zone}${reason}`,
  };
}

export function dnsblFilter(o: DnsblOptions): SessionFilter {
  const atConnect = o.lists.filter((l) => l.at === 'connect');
  const atRcpt = o.lists.filter((l) => l.at === 'rcpt');
  const exempt = (ctx: SessionContext) => cidrListContains(o.relayNetworks, ctx.client.ip);
  const f: SessionFilter = {};
  if (atConnect.length > 0) f.connect = (ctx) => (exempt(ctx) ? null : lookup(ctx.client.ip, atConnect, o));
  if (atRcpt.length > 0)
    f.checkRecipient = (_address, ctx) =>
      exempt(ctx) || ctx.client.auth !== undefined || o.permitted?.(ctx) === true
        ? null
        : lookup(ctx.client.ip, atRcpt, o);
  return f;
}
