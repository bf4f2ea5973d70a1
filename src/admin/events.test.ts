import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DeliveryJob } from '../queue/types.js';
import type { ReceivedMessage, ServerHooks } from '../smtp/server/hooks.js';
import { EventBus, type MtaEvent } from './events.js';
import { eventFields, logEvents } from './events-log.js';
import { BufferedData } from '../smtp/server/message-data.js';

function collect(bus: EventBus): MtaEvent[] {
  const seen: MtaEvent[] = [];
  bus.on((e) => seen.push(e));
  return seen;
}

const message = (id: string): ReceivedMessage => ({
  id,
  sender: 's@a.test',
  recipients: [{ address: 'r@b.test' }],
  params: {},
  data: new BufferedData([Buffer.from('x\r\n')]),
  size: 3,
  client: {
    ip: '192.0.2.1',
    port: 1234,
    helo: 'h.test',
    tls: { protocol: 'TLSv1.3', cipher: 'c' },
    auth: 'alice',
  },
  receivedAt: 0,
});

describe('event bus', () => {
  test('a message accepted over SMTP is received with the client facts; the facts are dropped after accept', async () => {
    const bus = new EventBus();
    const seen = collect(bus);
    const hooks: ServerHooks = {
      newMessageId: () => 'X',
      accept: async (m) => {
        bus.fromQueue({ type: 'accepted', id: m.id, size: m.size, recipients: 1 });
        return { queueId: m.id };
      },
    };
    await bus.wrapServerHooks(hooks).accept(message('ID1'));
    bus.fromQueue({ type: 'accepted', id: 'ID1', size: 3, recipients: 1 });
    assert.deepEqual(seen, [
      {
        type: 'received',
        id: 'ID1',
        size: 3,
        recipients: 1,
        source: 'smtp',
        sender: 's@a.test',
        client: { ip: '192.0.2.1', helo: 'h.test', tls: 'TLSv1.3', auth: 'alice' },
      },
      { type: 'received', id: 'ID1', size: 3, recipients: 1, source: 'local' },
    ]);
  });

  test('a failed accept leaves nothing parked', async () => {
    const bus = new EventBus();
    const seen = collect(bus);
    const hooks: ServerHooks = {
      newMessageId: () => 'X',
      accept: async () => {
        throw new Error('disk full');
      },
    };
    await assert.rejects(bus.wrapServerHooks(hooks).accept(message('ID2')), /disk full/);
    bus.fromQueue({ type: 'accepted', id: 'ID2', size: 3, recipients: 1 });
    assert.equal((seen[0] as { source: string }).source, 'local');
  });

  test('events during a delivery job carry the delay since arrival, the attempt number and the lane', async () => {
    let now = 10_000;
    const bus = new EventBus(() => now);
    const seen = collect(bus);
    const job = {
      id: 'ID3',
      lane: 'retry-300s',
      attempts: 2,
      envelope: { arrival: 4_000, info: { attempts: 2 } },
    } as unknown as DeliveryJob;
    await bus.wrapDeliverer(async () => {
      bus.fromAttempt({
        id: 'ID3',
        rcpt: 'r@b.test',
        relay: 'mx:25',
        status: 'delivered',
        code: 250,
        ms: 12,
      });
      now = 10_005;
      bus.fromQueue({ type: 'delivered', id: 'ID3', rcpt: 'r@b.test', code: 250, text: 'ok', host: 'mx:25' });
    })(job);
    bus.fromQueue({ type: 'deferred', id: 'ID3', rcpt: 'r@b.test' });
    assert.deepEqual(seen, [
      {
        type: 'attempt',
        id: 'ID3',
        rcpt: 'r@b.test',
        relay: 'mx:25',
        status: 'delivered',
        code: 250,
        ms: 12,
        delayMs: 6000,
        attempt: 3,
        lane: 'retry-300s',
      },
      {
        type: 'delivered',
        id: 'ID3',
        rcpt: 'r@b.test',
        code: 250,
        text: 'ok',
        relay: 'mx:25',
        delayMs: 6005,
      },
      { type: 'deferred', id: 'ID3', rcpt: 'r@b.test' },
    ]);
  });

  test('moves into held lanes become held events; operator actions keep their text', () => {
    const bus = new EventBus();
    const seen = collect(bus);
    bus.fromQueue({ type: 'moved', id: 'A', lane: 'held-example.org' });
    bus.fromQueue({ type: 'moved', id: 'A', lane: 'hold' });
    bus.fromQueue({ type: 'moved', id: 'A', lane: 'retry-900s' });
    bus.fromQueue({ type: 'admin', id: 'A', action: 'held by operator' });
    assert.deepEqual(seen, [
      { type: 'held', id: 'A', lane: 'held-example.org', domain: 'example.org' },
      { type: 'held', id: 'A', lane: 'hold' },
      { type: 'moved', id: 'A', lane: 'retry-900s' },
      { type: 'operator', id: 'A', action: 'held by operator' },
    ]);
  });

  test('a listener that throws does not stop the others and is reported once', () => {
    const bus = new EventBus();
    const errors: unknown[] = [];
    bus.onListenerError = (e) => errors.push(e);
    bus.on(() => {
      throw new Error('boom');
    });
    const seen = collect(bus);
    bus.emit({ type: 'expired', id: 'A', rcpt: 'r' });
    bus.emit({ type: 'expired', id: 'B', rcpt: 'r' });
    assert.equal(seen.length, 2);
    assert.equal(errors.length, 1);
  });
});

describe('event log lines', () => {
  test('the client is flattened, AUTH becomes authUser, and levels follow the event', () => {
    const lines: Array<[string, string, Record<string, unknown>]> = [];
    const at = (level: string) => (f: Record<string, unknown>, m: string) => void lines.push([level, m, f]);
    const logger = {
      error: at('error'),
      warn: at('warn'),
      info: at('info'),
      debug: at('debug'),
      child: () => logger,
      isLevelEnabled: (l: string) => l !== 'debug',
      flush() {},
    };
    const bus = new EventBus();
    logEvents(bus, logger);
    bus.emit({
      type: 'received',
      id: 'A',
      size: 1,
      recipients: 1,
      source: 'smtp',
      client: { ip: '192.0.2.1', auth: 'alice' },
    });
    bus.emit({ type: 'failed', id: 'A', rcpt: 'r', code: 550 });
    bus.emit({ type: 'moved', id: 'A', lane: 'retry-300s' });
    assert.deepEqual(lines, [
      [
        'info',
        'received',
        { id: 'A', size: 1, recipients: 1, source: 'smtp', client: '192.0.2.1', authUser: 'alice' },
      ],
      ['warn', 'failed', { id: 'A', rcpt: 'r', code: 550 }],
    ]);
    assert.deepEqual(eventFields({ type: 'expired', id: 'B', rcpt: 'x' }), { id: 'B', rcpt: 'x' });
  });
});
