// The structured log of the event bus: one JSON line per event, message events keyed by `id`
// (the queue id), so `grep '"id":"<ID>"'` tells the whole life of a message. Field names are
// listed in docs/observability.md and are a stable interface for log shippers.
// Invariant: only fields of the event are written (never an SMTP command or a credential);
// the logger's own redaction is a second line of defence.
// Failure: none of its own; a logger that throws is isolated by the bus.
import type { Logger, LogFields } from '../log.js';
import type { EventBus, MtaEvent } from './events.js';

/** The message each event type is logged with (the `msg` field). */
export const EVENT_MESSAGES: Record<MtaEvent['type'], string> = {
  received: 'received',
  attempt: 'delivery attempt',
  delivered: 'delivered',
  deferred: 'deferred',
  failed: 'failed',
  expired: 'expired',
  warned: 'delay warning',
  held: 'held',
  moved: 'moved',
  operator: 'operator action',
  etrn: 'etrn',
  atrn: 'atrn',
  'segment-unlinked': 'segment unlinked',
};

/** Fields of one event as logged: the event minus its type, with the client flattened. */
export function eventFields(ev: MtaEvent): LogFields {
  const { type: _type, ...rest } = ev;
  if (ev.type === 'received' && ev.client) {
    const { client, ...others } = rest as Extract<MtaEvent, { type: 'received' }>;
    const out: LogFields = { ...others, client: client!.ip };
    if (client!.helo !== undefined) out.helo = client!.helo;
    if (client!.tls !== undefined) out.tls = client!.tls;
    if (client!.auth !== undefined) out.authUser = client!.auth;
    return out;
  }
  return rest;
}

/** Subscribes `log` to the bus; returns the unsubscribe function. */
export function logEvents(bus: EventBus, log: Logger): () => void {
  return bus.on((ev) => {
    const msg = EVENT_MESSAGES[ev.type];
    switch (ev.type) {
      case 'moved':
      case 'segment-unlinked':
        if (log.isLevelEnabled('debug')) log.debug(eventFields(ev), msg);
        return;
      case 'expired':
      case 'failed':
        log.warn(eventFields(ev), msg);
        return;
      default:
        log.info(eventFields(ev), msg);
    }
  });
}
