// The event bus: one typed event per thing that happens to a message or a session, keyed by
// queue id where there is one. Producers (the queue's onEvent hook, the delivery engine, the
// SMTP hooks, operator commands, ETRN/ATRN code) emit; consumers (the JSON log, the metrics)
// subscribe. daemon.ts builds one bus per daemon and passes it around: no module singleton.
// Invariant: an event never carries a credential: only the AUTH identity, never a password or
// an SMTP command line. A listener that throws is isolated (the others still run) and the
// error is reported once through `onListenerError`, never to the producer.
import type { AttemptEvent } from '../delivery/engine.js';
import type { EtrnOdmrEvent } from '../odmr/wire.js';
import { type DeliveryJob, parseLaneName, type QueueEvent } from '../queue/index.js';
import type { ReceivedMessage, ServerHooks, SessionContext } from '../smtp/server/hooks.js';

export interface ClientFacts {
  ip: string;
  helo?: string;
  tls?: string;
  auth?: string;
}

/** What the `received` event tells of the client that sent message `m`. */
export function clientFacts(m: Pick<ReceivedMessage, 'client'>): ClientFacts {
  const client: ClientFacts = { ip: m.client.ip };
  if (m.client.helo !== undefined) client.helo = m.client.helo;
  if (m.client.tls) client.tls = m.client.tls.protocol;
  if (m.client.auth !== undefined) client.auth = m.client.auth;
  return client;
}

export type MtaEvent =
  | {
      type: 'received';
      id: string;
      size: number;
      recipients: number;
      /** 'smtp' when it came over SMTP (then `client` is set), 'local' otherwise (reports, injection). */
      source: 'smtp' | 'local';
      sender?: string;
      client?: ClientFacts;
    }
  | (AttemptEvent & {
      type: 'attempt';
      /** Time since the message arrived. */
      delayMs?: number;
      attempt?: number;
      lane?: string;
    })
  | {
      type: 'delivered' | 'deferred' | 'failed';
      id: string;
      rcpt: string;
      code?: number;
      /** Enhanced status code (RFC 3463), e.g. "5.1.1". */
      enhanced?: string;
      text?: string;
      relay?: string;
      delayMs?: number;
    }
  | { type: 'expired'; id: string; rcpt: string }
  | { type: 'warned'; id: string; rcpt: string }
  | { type: 'held'; id: string; lane: string; domain?: string }
  | { type: 'moved'; id: string; lane: string }
  | { type: 'operator'; id: string; action: string; user?: string }
  | EtrnOdmrEvent
  | { type: 'segment-unlinked'; lane: string; seq: number; spare: boolean };

export type Listener = (ev: MtaEvent) => void;

export class EventBus {
  private readonly listeners: Listener[] = [];
  /** Facts known about messages being accepted right now, by queue id (filled by the SMTP hooks). */
  private readonly pendingClients = new Map<string, { sender: string; client: ClientFacts }>();
  /** Messages being delivered now: arrival time and attempt number, by queue id. */
  private readonly active = new Map<
    string,
    { arrival: number; attempt: number; lane: string; refs: number }
  >();
  onListenerError: ((e: unknown) => void) | undefined;
  private reported = false;

  constructor(private readonly now: () => number = Date.now) {}

  on(l: Listener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  emit(ev: MtaEvent): void {
    for (const l of this.listeners) {
      try {
        l(ev);
      } catch (e) {
        if (!this.reported) {
          this.reported = true;
          this.onListenerError?.(e);
        }
      }
    }
  }

  /** The QueueHooks.onEvent adapter: queue events become bus events, enriched where we know more. */
  readonly fromQueue = (ev: QueueEvent): void => {
    switch (ev.type) {
      case 'accepted': {
        const known = this.pendingClients.get(ev.id);
        this.emit(
          known
            ? {
                type: 'received',
                id: ev.id,
                size: ev.size,
                recipients: ev.recipients,
                source: 'smtp',
                sender: known.sender,
                client: known.client,
              }
            : { type: 'received', id: ev.id, size: ev.size, recipients: ev.recipients, source: 'local' },
        );
        break;
      }
      case 'delivered':
      case 'deferred':
      case 'failed': {
        const out: MtaEvent = {
          type: ev.type,
          id: ev.id,
          rcpt: ev.rcpt,
        };
        if (ev.code !== undefined) out.code = ev.code;
        if (ev.enhanced !== undefined) out.enhanced = ev.enhanced;
        if (ev.text !== undefined) out.text = ev.text;
        if (ev.host !== undefined) out.relay = ev.host;
        const a = this.active.get(ev.id);
        if (a) out.delayMs = this.now() - a.arrival;
        this.emit(out);
        break;
      }
      case 'expired':
      case 'warned':
        this.emit({ type: ev.type, id: ev.id, rcpt: ev.rcpt });
        break;
      case 'moved': {
        const domain = parseLaneName(ev.lane)?.domain;
        if (ev.lane === 'hold') this.emit({ type: 'held', id: ev.id, lane: ev.lane });
        else if (domain !== undefined) this.emit({ type: 'held', id: ev.id, lane: ev.lane, domain });
        else this.emit({ type: 'moved', id: ev.id, lane: ev.lane });
        break;
      }
      case 'admin':
        this.emit({ type: 'operator', id: ev.id, action: ev.action });
        break;
      case 'segment-unlinked':
        this.emit({ type: 'segment-unlinked', lane: ev.lane, seq: ev.seq, spare: ev.spare });
        break;
    }
  };

  /** The DeliveryEngine `attempt` adapter: adds the delay since arrival and the attempt number. */
  readonly fromAttempt = (ev: AttemptEvent): void => {
    const out: MtaEvent = {
      type: 'attempt',
      id: ev.id,
      rcpt: ev.rcpt,
      relay: ev.relay,
      status: ev.status,
      ms: ev.ms,
    };
    if (ev.code !== undefined) out.code = ev.code;
    if (ev.text !== undefined) out.text = ev.text;
    if (ev.detail !== undefined) out.detail = ev.detail;
    if (ev.mtaSts !== undefined) out.mtaSts = ev.mtaSts;
    if (ev.mtaStsId !== undefined) out.mtaStsId = ev.mtaStsId;
    if (ev.mtaStsFailure !== undefined) out.mtaStsFailure = ev.mtaStsFailure;
    if (ev.dane !== undefined) out.dane = ev.dane;
    if (ev.daneMatch !== undefined) out.daneMatch = ev.daneMatch;
    const a = this.active.get(ev.id);
    if (a) {
      out.delayMs = this.now() - a.arrival;
      out.attempt = a.attempt;
      out.lane = a.lane;
    }
    this.emit(out);
  };

  /**
   * Wraps the queue's deliverer so events emitted during a job know the message's arrival,
   * attempt number and lane. Bookkeeping lives only while a job runs (no growth with the queue).
   */
  wrapDeliverer(deliver: (job: DeliveryJob) => Promise<void>): (job: DeliveryJob) => Promise<void> {
    return async (job) => {
      let a = this.active.get(job.id);
      if (a) a.refs++;
      else {
        a = {
          arrival: job.envelope.arrival,
          attempt: job.attempts + 1,
          lane: job.lane,
          refs: 1,
        };
        this.active.set(job.id, a);
      }
      try {
        await deliver(job);
      } finally {
        if (--a.refs === 0 && this.active.get(job.id) === a) this.active.delete(job.id);
      }
    };
  }

  /**
   * Wraps the SMTP server hooks so the `received` event carries the client's facts (address,
   * HELO, TLS, AUTH identity). The queue emits `accepted` before accept() resolves, so the facts
   * are parked by queue id for exactly the duration of the call.
   */
  /**
   * Runs `accept` with the client's facts noted for message `id`'s `received` event (the queue
   * emits it, knowing only the envelope): for a session on another thread, whose hooks this bus
   * cannot wrap.
   */
  async withClient<T>(id: string, sender: string, client: ClientFacts, accept: () => Promise<T>): Promise<T> {
    this.pendingClients.set(id, { sender, client });
    try {
      return await accept();
    } finally {
      this.pendingClients.delete(id);
    }
  }

  wrapServerHooks(hooks: ServerHooks): ServerHooks {
    const accept = hooks.accept.bind(hooks);
    return {
      ...hooks,
      accept: async (m: ReceivedMessage, ctx?: SessionContext) => {
        return this.withClient(m.id, m.sender, clientFacts(m), () => accept(m, ctx));
      },
    };
  }
}
