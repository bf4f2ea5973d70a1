// The provider's side of the ATRN turnaround (RFC 2645 §4.3): on the socket the customer just
// authenticated on, we are now the SMTP client. We wait for the customer's 220, send EHLO, then
// every held envelope of the requested lanes — one transaction per message with all its
// recipients in those lanes (pieces of a message split across several requested domains are
// sent together, once) — commit each outcome, and end with QUIT. The lanes are read as a cursor
// (one message claimed at a time), never loaded whole.
// A stopping provider (a reload) ends the session with QUIT after the message under way, as a
// cleanly ended session: the customer dials in again for the rest.
// Invariants: an outcome is committed (job.finish) before the next message is sent; a piece that
// was not delivered — customer gone, 4xx, timeout — stays in its held lane, and finishing it with
// nothing delivered writes nothing; every claimed job is finished exactly once, so its lane is
// free again when this returns.
// Fails: never rejects; connection trouble ends the session and is reported in the result.

import { errorText } from '../errors.js';
import type { DeliveryJob, RcptOutcome } from '../queue/index.js';
import { sendTransaction } from '../delivery/outbound.js';
import type { Reply, SmtpClient, SmtpTimeouts } from '../smtp/client/index.js';
import { isSmtpDomain } from '../util/domain.js';
import type { Clock } from '../util/clock.js';
import type { OdmrLogger } from './etrn.js';
import type { Turnaround } from './turnaround.js';

export interface ClaimableLanes {
  heldCount(domain: string): number;
  /** The held lanes as a cursor: the claimed pieces of one message per call (Queue.openHeld). */
  openHeld(domains: readonly string[]): { next(): Promise<DeliveryJob[] | undefined> };
}

export interface AtrnDeliveryOptions {
  lanes: ClaimableLanes;
  /** Our EHLO name. */
  name: string;
  clock?: Clock;
  timeouts?: Partial<SmtpTimeouts>;
  logger?: OdmrLogger;
  /** Called with the client as soon as it exists (so a stopping provider can close it). */
  onClient?(client: SmtpClient): void;
  /** The customer's 220, already read (a cluster node served another home's mail first). */
  greeting?: Reply;
  /** The provider stops (a reload): send no further message, QUIT after the one under way. */
  stopping?(): boolean;
}

export interface AtrnResult {
  messages: number;
  delivered: number;
  deferred: number;
  failed: number;
  /** Why the session ended early, if it did. */
  error?: string;
}

/** Pieces of one message, in lane order of the first piece. */
export function groupByMessage(jobs: readonly DeliveryJob[]): DeliveryJob[][] {
  const byMsg = new Map<number, DeliveryJob[]>();
  for (const j of jobs) {
    const g = byMsg.get(j.msgId);
    if (g) g.push(j);
    else byMsg.set(j.msgId, [j]);
  }
  return [...byMsg.values()];
}

interface Slot {
  job: DeliveryJob;
  rcpt: number;
}

export async function deliverHeld(
  turnaround: Turnaround,
  domains: readonly string[],
  o: AtrnDeliveryOptions,
): Promise<AtrnResult> {
  const result: AtrnResult = { messages: 0, delivered: 0, deferred: 0, failed: 0 };
  let client: SmtpClient | undefined;
  /** The message being sent: its claimed pieces, finished before the next one is taken. */
  let group: DeliveryJob[] = [];
  /** Which of the group's pieces are finished (only the current group is kept: memory is flat). */
  let finished = new Set<DeliveryJob>();
  try {
    // The customer speaks first (220); bytes it sent early are its, not a server's commands.
    // The session's own TLS (STARTTLS before AUTH) carries over; no second STARTTLS inside.
    const adopting = turnaround.client({
      name: o.name,
      ...(o.clock ? { clock: o.clock } : {}),
      ...(o.timeouts ? { timeouts: o.timeouts } : {}),
      ...(o.greeting ? { greeting: o.greeting } : {}),
    });
    client = await adopting;
    o.onClient?.(client);
    // The lanes are streamed: one message claimed at a time, oldest first, so the first goes out
    // at once and memory stays flat whatever the lanes hold.
    const cursor = o.lanes.openHeld(domains);
    const host = customerHost(client);
    while (client.usable && !o.stopping?.()) {
      group = (await cursor.next()) ?? [];
      finished = new Set();
      if (group.length === 0) break;
      const outs = await sendMessage(client, group, host);
      result.messages++;
      for (const job of group) {
        const mine = outs.get(job) ?? [];
        for (const x of mine) result[x.status]++;
        finished.add(job);
        await job.finish(mine);
      }
    }
    if (client.usable) await client.quit();
    else result.error = client.connection.error?.message ?? 'connection lost';
  } catch (e) {
    result.error = errorText(e);
  } finally {
    // Whatever was not sent stays held: finishing with no outcome writes nothing (unless the
    // piece has expired, which then bounces as it would anyway).
    for (const j of group) {
      if (finished.has(j)) continue;
      try {
        await j.finish([]);
      } catch (e) {
        o.logger?.warn({ id: j.id, err: errorText(e) }, 'atrn: could not release a held piece');
      }
    }
    if (client) client.close();
    else turnaround.destroy();
  }
  o.logger?.info({ domains, ...result }, 'atrn session done');
  return result;
}

/**
 * The customer as a report names it (Remote-MTA is an RFC 3464 "dns" name): the host name its
 * 220 greeting gives, as "name[address]" like any other next hop; undefined when the greeting
 * names no valid domain (then reports leave Remote-MTA out).
 */
export function customerHost(client: SmtpClient): string | undefined {
  const name = client.greeting?.text.trim().split(/\s+/)[0] ?? '';
  if (!name.includes('.') || !isSmtpDomain(name)) return undefined;
  const ip = client.connection.socket.remoteAddress;
  return ip === undefined ? name : `${name}[${ip}]`;
}

/** One transaction (more if the customer limits recipients) for all pieces of one message. */
async function sendMessage(
  client: SmtpClient,
  group: DeliveryJob[],
  host: string | undefined,
): Promise<Map<DeliveryJob, RcptOutcome[]>> {
  const out = new Map<DeliveryJob, RcptOutcome[]>(group.map((j) => [j, []]));
  const slots: Slot[] = group.flatMap((job) => job.pending.map((rcpt) => ({ job, rcpt })));
  const r = await sendTransaction(
    client,
    group[0]!,
    slots.map((s) => s.job.envelope.info.recipients[s.rcpt]!),
    host === undefined ? {} : { host },
  );
  r.outcomes.forEach((o, i) => {
    const s = slots[i]!;
    out.get(s.job)!.push({ ...o, rcpt: s.rcpt });
  });
  return out;
}
