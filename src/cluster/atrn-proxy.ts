// ATRN at any node: a customer authenticated here asks for domains homed on other nodes. Before
// answering, this node opens an ODMR session to each of those homes (AUTH as a peer, `ATRN` of
// the domains homed there); every home that answers 250 has reversed roles and waits for a
// greeting. After our own 250 the customer greets; we read its 220 once and then serve the
// homes in turn: replay the greeting to a home and splice the two connections — bytes pass
// both ways untouched, so the home delivers straight to the customer and the customer's replies
// decide each message — until the home's QUIT (held back, and answered 221 by us, unless it is
// the last part of the session). Mail homed here goes last, through the usual turnaround on the
// same customer connection (a fresh EHLO resets the customer's session).
// Invariants: a home's part ends only at a clean boundary (SpliceWatch); a home that dies
// mid-transaction ends the whole customer session (the customer discards the cut message; the
// home keeps it held), so no byte of one session is ever read as part of another. What a home
// has not delivered stays held there; nothing is held or committed by the node in between.
// Fails: never rejects; trouble ends the session and is reported in the result.

import type net from 'node:net';
import { errorText } from '../errors.js';
import type { Logger } from '../log.js';
import type { AtrnResult } from '../odmr/index.js';
import { type Reply, ReplyParser } from '../smtp/client/reply.js';
import { SpliceWatch } from './splice.js';

/** One home's reversed session, opened before our 250 to the customer. */
export interface AtrnLeg {
  node: string;
  domains: string[];
  socket: net.Socket;
}

export interface ProxyOptions {
  timeoutMs: number;
  log: Logger;
}

/** Reads the customer's greeting: the reply, its exact bytes, and whatever followed it. */
function readGreeting(
  socket: net.Socket,
  pending: Buffer,
  timeoutMs: number,
): Promise<{ reply: Reply; raw: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = pending;
    const done = (e: Error | null): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.pause();
      if (e) reject(e);
    };
    const check = (): boolean => {
      let pos = 0;
      for (;;) {
        const lf = buf.indexOf(0x0a, pos);
        if (lf < 0) return false;
        const line = buf.subarray(pos, lf).toString('latin1');
        pos = lf + 1;
        if (/^\d{3}(?: |\r?$)/.test(line)) {
          const raw = Buffer.from(buf.subarray(0, pos));
          const [reply] = new ReplyParser().feed(raw);
          done(null);
          if (!reply) reject(new Error('unreadable greeting'));
          else resolve({ reply, raw, rest: Buffer.from(buf.subarray(pos)) });
          return true;
        }
        if (!/^\d{3}-/.test(line)) {
          done(new Error(`not a greeting: ${JSON.stringify(line.slice(0, 80))}`));
          return true;
        }
      }
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > 64 * 1024) done(new Error('greeting too long'));
      else check();
    };
    const onClose = (): void => done(new Error('the customer closed the connection before greeting'));
    const timer = setTimeout(() => done(new Error('no greeting from the customer')), timeoutMs);
    if (check()) return;
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.resume();
  });
}

type LegEnd = 'next' | 'end' | 'abort' | 'gone';

/** Splices the customer with one home until the home's part ends. */
function spliceLeg(
  customer: net.Socket,
  leg: AtrnLeg,
  greeting: Buffer,
  last: boolean,
  counted: { messages: number },
): Promise<LegEnd> {
  const home = leg.socket;
  const w = new SpliceWatch(!last);
  return new Promise<LegEnd>((resolve) => {
    let ended = false;
    let quitting = false;
    const finish = (how: LegEnd): void => {
      if (ended) return;
      ended = true;
      customer.off('data', onCustomer);
      customer.off('close', onCustomerClose);
      customer.off('drain', onCustomerDrain);
      home.off('data', onHome);
      home.off('close', onHomeClose);
      home.off('drain', onHomeDrain);
      customer.pause();
      counted.messages += w.messages;
      if (how === 'next') home.end('221 2.0.0 Bye\r\n');
      else if (how !== 'end') home.destroy();
      resolve(how);
    };
    // Flow control both ways: a side that cannot keep up pauses the other.
    const onCustomerDrain = (): void => void home.resume();
    const onHomeDrain = (): void => void customer.resume();
    const onCustomer = (d: Buffer): void => {
      w.fromCustomer(d);
      if (!home.destroyed && !home.write(d)) customer.pause();
      if (quitting && w.outstanding === 0) finish(w.clean ? 'next' : 'abort');
    };
    const onHome = (d: Buffer): void => {
      const r = w.fromHome(d);
      if (r.forward.length > 0 && !customer.write(r.forward)) home.pause();
      if (r.quit && !last && !quitting) {
        quitting = true;
        if (w.outstanding === 0) finish(w.clean ? 'next' : 'abort');
      }
    };
    const onHomeClose = (): void => {
      if (last) {
        // The home ended the customer's session (its QUIT went through): close our side too.
        finish('end');
        customer.end();
        return;
      }
      // A home gone between transactions lets the next part go on; mid-transaction it does not.
      finish(w.clean ? 'next' : 'abort');
    };
    // After the last home's QUIT went through, the customer closing is the session's normal end.
    const onCustomerClose = (): void => finish(last && w.quit ? 'end' : 'gone');
    customer.on('data', onCustomer);
    customer.once('close', onCustomerClose);
    customer.on('drain', onCustomerDrain);
    home.on('data', onHome);
    home.once('close', onHomeClose);
    home.on('drain', onHomeDrain);
    home.on('error', () => {});
    // The home waits for the customer's 220: it gets the one the customer sent us.
    home.write(greeting);
    customer.resume();
  });
}

/**
 * Serves a customer connection after ATRN's 250: each home's leg in turn, then `local` (mail
 * homed here, given the customer's greeting and any bytes read past it), if any.
 */
export async function serveLegs(
  customer: net.Socket,
  pending: Buffer,
  legs: AtrnLeg[],
  local: ((greeting: Reply, rest: Buffer) => Promise<AtrnResult>) | undefined,
  o: ProxyOptions,
): Promise<AtrnResult> {
  const result: AtrnResult = { messages: 0, delivered: 0, deferred: 0, failed: 0 };
  let g: Awaited<ReturnType<typeof readGreeting>>;
  try {
    g = await readGreeting(customer, pending, o.timeoutMs);
    if (g.reply.code !== 220) throw new Error(`the customer greeted with ${g.reply.code}`);
  } catch (e) {
    for (const l of legs) l.socket.destroy();
    customer.destroy();
    result.error = errorText(e);
    return result;
  }
  const counted = { messages: 0 };
  let i = 0;
  for (; i < legs.length; i++) {
    const leg = legs[i]!;
    if (leg.socket.destroyed) {
      o.log.warn({ node: leg.node, domains: leg.domains }, 'atrn: a home ended its session before its turn');
      continue;
    }
    const last = i === legs.length - 1 && local === undefined;
    const how = await spliceLeg(
      customer,
      leg,
      g.rest.length > 0 && i === 0 ? Buffer.concat([g.raw, g.rest]) : g.raw,
      last,
      counted,
    );
    o.log.info({ node: leg.node, domains: leg.domains, end: how }, 'atrn: a home served its part');
    if (how === 'end') break;
    if (how === 'abort' || how === 'gone') {
      result.error =
        how === 'gone' ? 'the customer closed the connection' : `home ${leg.node} ended mid-transaction`;
      for (const l of legs.slice(i + 1)) l.socket.destroy();
      customer.destroy();
      result.messages = result.delivered = counted.messages;
      return result;
    }
  }
  result.messages = result.delivered = counted.messages;
  if (local === undefined) {
    if (!customer.destroyed) customer.end();
    return result;
  }
  // Mail homed here last, on the same connection (a new EHLO resets the customer's session).
  const r = await local(g.reply, Buffer.alloc(0));
  return {
    messages: result.messages + r.messages,
    delivered: result.delivered + r.delivered,
    deferred: r.deferred,
    failed: r.failed,
    ...(r.error !== undefined ? { error: r.error } : {}),
  };
}
