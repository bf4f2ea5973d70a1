// Observability of a running daemon: the Prometheus series at /metrics on the HTTP admin
// listener after real mail has flowed (delivered, bounced, held for an ODMR domain), one
// private registry per daemon, and the structured JSON log of one message's life, captured
// from a real pino logger writing to a buffer — with the AUTH password nowhere in it.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, afterEach, describe, test } from 'node:test';
import { PerformanceObserver } from 'node:perf_hooks';
import { createLogger } from '../../src/log.js';
import { startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { sendMail } from '../support/inject.js';
import { waitFor } from '../support/wait.js';

const opened: Array<{ stop?: () => Promise<void>; close?: () => Promise<void> }> = [];
const cleanup = async () => {
  for (const o of opened.splice(0).reverse()) await (o.stop ?? o.close)?.call(o);
};
afterEach(cleanup);
after(cleanup);

const PASSWORD = 'Pa55-word-SECRET';

function toml(sinkPort: number, adminExtra = ''): string {
  return `
[smtp]
relay_networks = ["127.0.0.0/8"]
[admin]
listen = "127.0.0.1:0"
${adminExtra}
[queue]
retry = ["1h"]
[[route]]
domain = "*"
host = "127.0.0.1:${sinkPort}"
[[user]]
name = "alice"
password = "${PASSWORD}"
[[odmr.account]]
user = "cust"
password = "custpw"
domains = ["odmr.test"]
`;
}

async function setup(logger?: ReturnType<typeof createLogger>): Promise<{ sink: SmtpSink; d: TestDaemon }> {
  const sink = await SmtpSink.start({
    rcptReply: (a) => (a.startsWith('bad@') ? '550 5.1.1 no such user' : undefined),
  });
  opened.push(sink);
  const d = await startTestDaemon({ toml: toml(sink.port), ...(logger ? { logger } : {}) });
  opened.push(d);
  return { sink, d };
}

async function scrape(d: TestDaemon): Promise<string> {
  const addr = d.daemon.admin.httpAddress;
  assert.ok(addr, 'the HTTP admin listener is up');
  const r = await fetch(`http://${addr}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
  return r.text();
}

/** The value of one series, e.g. value(text, 'logmta_recipients_total{outcome="delivered"}'). */
function value(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('Prometheus metrics at /metrics', () => {
  test('after mail flows, the expected series are there with the right values', async () => {
    const { sink, d } = await setup();
    await sendMail(d.port, { from: 'a@src.test', to: ['ok@dst.test'] });
    await sendMail(d.port, { from: 'a@src.test', to: ['bad@dst.test'] });
    await sendMail(d.port, { from: 'a@src.test', to: ['someone@odmr.test'] });
    // ok delivered; bad failed (and its bounce to a@src.test delivered); odmr held.
    await waitFor(() => sink.transactions.length >= 2, 'delivery and bounce', 5000);
    await waitFor(
      () => d.daemon.metrics.totals.failed >= 1 && d.daemon.metrics.totals.delivered >= 2,
      'outcomes',
      5000,
    );
    const text = await scrape(d);

    assert.equal(value(text, 'logmta_messages_received_total{source="smtp"}'), 3);
    assert.equal(
      value(text, 'logmta_messages_received_total{source="local"}'),
      undefined,
      'the bounce is not counted as received',
    );
    assert.equal(
      value(text, 'logmta_recipients_total{outcome="delivered"}'),
      2,
      'the message and the bounce',
    );
    assert.equal(value(text, 'logmta_recipients_total{outcome="failed"}'), 1);
    assert.equal(value(text, 'logmta_delivery_attempts_total{status="failed",route="remote"}'), 1);
    assert.equal(value(text, 'logmta_destination_failures_total{destination="dst.test",status="failed"}'), 1);
    assert.equal(value(text, 'logmta_queue_depth{lane="held-odmr.test",kind="held"}'), 1);
    assert.equal(value(text, 'logmta_held_messages{domain="odmr.test"}'), 1);
    assert.ok((value(text, 'logmta_held_oldest_age_seconds{domain="odmr.test"}') ?? -1) >= 0);
    assert.equal(value(text, 'logmta_queue_messages'), 1, 'only the held message is left');
    assert.ok((value(text, 'logmta_queue_oldest_message_age_seconds') ?? -1) >= 0);
    assert.ok((value(text, 'logmta_smtp_connections_total') ?? 0) >= 3);
    assert.equal(value(text, 'logmta_smtp_sessions'), 0);
    assert.equal(value(text, 'logmta_message_memory_budget_bytes'), 256 * 1024 * 1024);
    assert.equal(
      value(text, 'logmta_message_memory_bytes'),
      0,
      'no message bytes held once all was attempted',
    );
    assert.ok(
      (value(text, 'logmta_commit_batch_records_count') ?? 0) >= 3,
      'each accepted message was a commit',
    );
    assert.ok((value(text, 'logmta_fsync_seconds_count') ?? 0) >= 3);
    assert.match(text, /^logmta_fsync_seconds_bucket\{le="0\.001"\} \d+$/m);
    assert.match(text, /^logmta_commit_batch_bytes_sum \d+/m);
    assert.equal(value(text, 'logmta_destination_connections{destination="route:*",state="waiting"}'), 0);
    assert.ok(
      value(text, 'logmta_destination_connections{destination="route:*",state="active"}') !== undefined,
    );
    assert.match(text, /^logmta_recovery_duration_seconds\{queue="[^"]+"\} [\d.e-]+$/m);
    assert.match(text, /^logmta_delivery_attempt_seconds_count \d+$/m);
    assert.match(text, /^# HELP logmta_queue_depth /m);
    assert.match(text, /^logmta_queue_spare_segments\{queue="[^"]+",state="reused"\} \d+$/m);
    assert.match(text, /^process_cpu_user_seconds_total /m, 'process metrics are there too');
  });

  test('with an admin token, /metrics and /api/stats need it; the dashboard page itself does not', async () => {
    const sink = await SmtpSink.start({});
    opened.push(sink);
    const d = await startTestDaemon({ toml: toml(sink.port, 'token = "t0ken"') });
    opened.push(d);
    const base = `http://${d.daemon.admin.httpAddress}`;
    assert.equal((await fetch(`${base}/metrics`)).status, 401);
    assert.equal((await fetch(`${base}/api/stats`)).status, 401);
    const ok = await fetch(`${base}/metrics`, { headers: { authorization: 'Bearer t0ken' } });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /^logmta_queue_messages 0$/m);
    const stats = await fetch(`${base}/api/stats`, { headers: { authorization: 'Bearer t0ken' } });
    assert.equal(((await stats.json()) as { messages: number }).messages, 0);
    const page = await fetch(`${base}/dashboard`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<canvas id="chart-depth">/);
    assert.equal((await fetch(`${base}/dashboard/chart.umd.js`)).status, 200);
  });

  test('two daemons in one process keep separate registries', async () => {
    const a = await setup();
    const b = await setup();
    await sendMail(a.d.port, { from: 'a@src.test', to: ['one@odmr.test'] });
    await sendMail(a.d.port, { from: 'a@src.test', to: ['two@odmr.test'] });
    const ta = await scrape(a.d);
    const tb = await scrape(b.d);
    assert.equal(value(ta, 'logmta_messages_received_total{source="smtp"}'), 2);
    assert.equal(value(ta, 'logmta_held_messages{domain="odmr.test"}'), 2);
    assert.equal(value(tb, 'logmta_messages_received_total{source="smtp"}'), undefined);
    assert.equal(value(tb, 'logmta_held_messages{domain="odmr.test"}'), undefined);
    assert.equal(value(tb, 'logmta_queue_messages'), 0);
  });

  test('a daemon started again in the process (as a reload does) adds no process collectors', async () => {
    // prom-client's process metrics keep a GC observer and an event-loop-delay histogram alive
    // for good: one set per process, or every reload leaves one more behind.
    const a = await setup();
    const observe = PerformanceObserver.prototype.observe;
    let observers = 0;
    PerformanceObserver.prototype.observe = function (this: PerformanceObserver, ...args) {
      observers++;
      return observe.apply(this, args);
    } as typeof observe;
    try {
      for (let i = 0; i < 3; i++) await setup();
    } finally {
      PerformanceObserver.prototype.observe = observe;
    }
    assert.equal(observers, 0, 'GC observers added by three more daemons');
    const text = await scrape(a.d);
    assert.equal(text.match(/^# TYPE process_cpu_user_seconds_total /gm)?.length, 1, 'process metrics once');
    assert.ok((value(text, 'nodejs_eventloop_lag_p50_seconds') ?? -1) >= 0, 'event loop lag shown');
  });
});

/** A raw SMTP dialogue (so the test controls exactly what is sent, AUTH included). */
async function rawSmtp(port: number, lines: string[]): Promise<string> {
  const sock = connect(port, '127.0.0.1');
  let buf = '';
  let waiting: (() => void) | undefined;
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    waiting?.();
  });
  const reply = async (): Promise<string> => {
    // A complete reply ends with a line "ddd text" (no hyphen after the code).
    for (;;) {
      const m = /(^|\r\n)(\d{3}) [^\r\n]*\r\n/.exec(buf);
      if (m) {
        const end = m.index + m[0].length;
        const out = buf.slice(0, end);
        buf = buf.slice(end);
        return out;
      }
      await new Promise<void>((r) => (waiting = r));
    }
  };
  let transcript = await reply();
  for (const l of lines) {
    sock.write(`${l}\r\n`);
    if (expectsReply(l)) transcript += await reply();
  }
  sock.end();
  return transcript;
}

let inData = false;
/** Every command gets one reply; lines of message data get none, except the final dot. */
function expectsReply(l: string): boolean {
  if (inData) {
    if (l === '.') inData = false;
    return l === '.';
  }
  if (/^DATA$/i.test(l)) inData = true;
  return true;
}

describe('structured log of a message', () => {
  test('received, delivery attempt and delivered lines carry the queue id and their fields; no credential', async () => {
    const out: string[] = [];
    const logger = createLogger({
      format: 'json',
      level: 'info',
      destination: { write: (l: string) => out.push(l) },
    });
    const { sink, d } = await setup(logger);
    const plain = Buffer.from(`\0alice\0${PASSWORD}`).toString('base64');
    const transcript = await rawSmtp(d.port, [
      'EHLO client.example',
      `AUTH PLAIN ${plain}`,
      'MAIL FROM:<alice@src.test>',
      'RCPT TO:<bob@dst.test>',
      'DATA',
      'Subject: log test',
      '',
      'hello',
      '.',
      'QUIT',
    ]);
    assert.match(transcript, /235 /, 'authenticated');
    const queued = /250 [^\r\n]*?([0-9A-F]{10,})/.exec(transcript.split('354')[1] ?? '');
    assert.ok(queued, `a queue id in the reply to DATA: ${transcript}`);
    const id = queued[1]!;
    await waitFor(() => sink.transactions.length === 1, 'delivery', 5000);
    await waitFor(() => out.some((l) => l.includes('"msg":"delivered"')), 'the delivered line', 5000);

    const all = out.join('');
    assert.ok(!all.includes(PASSWORD), 'the password is never logged');
    assert.ok(!all.includes(plain), 'the AUTH PLAIN response is never logged');

    const lines = out.map((l) => JSON.parse(l) as Record<string, unknown>);
    const life = lines.filter((l) => l.id === id);
    assert.deepEqual(
      life.map((l) => l.msg),
      ['received', 'delivery attempt', 'delivered'],
    );
    const [received, attempt, delivered] = life as [
      Record<string, unknown>,
      Record<string, unknown>,
      Record<string, unknown>,
    ];
    assert.equal(received.level, 'info');
    assert.equal(received.client, '127.0.0.1');
    assert.equal(received.helo, 'client.example');
    assert.equal(received.authUser, 'alice');
    assert.equal(received.sender, 'alice@src.test');
    assert.equal(received.recipients, 1);
    assert.equal(received.source, 'smtp');
    assert.equal(typeof received.size, 'number');
    assert.ok((received.size as number) > 20);
    assert.equal(typeof received.time, 'number');

    assert.equal(attempt.rcpt, 'bob@dst.test');
    assert.equal(attempt.relay, `127.0.0.1:${sink.port}`);
    assert.equal(attempt.status, 'delivered');
    assert.equal(attempt.code, 250);
    assert.equal(attempt.attempt, 1);
    assert.equal(attempt.lane, 'new');
    assert.equal(typeof attempt.ms, 'number');
    assert.equal(typeof attempt.delayMs, 'number');

    assert.equal(delivered.rcpt, 'bob@dst.test');
    assert.equal(delivered.code, 250);
    assert.equal(delivered.relay, `127.0.0.1:${sink.port}`);
    assert.equal(typeof delivered.text, 'string');
  });

  test('a permanent failure logs a warn "failed" line; the bounce is delivered under its own id', async () => {
    const out: string[] = [];
    const logger = createLogger({
      format: 'json',
      level: 'info',
      destination: { write: (l: string) => out.push(l) },
    });
    const { sink, d } = await setup(logger);
    await sendMail(d.port, { from: 'a@src.test', to: ['bad@dst.test'] });
    await waitFor(() => sink.transactions.some((t) => t.sender === ''), 'the bounce', 5000);
    await waitFor(
      () => out.filter((l) => l.includes('"msg":"delivered"')).length >= 1,
      'bounce delivered',
      5000,
    );
    const lines = out.map((l) => JSON.parse(l) as Record<string, unknown>);
    const failed = lines.find((l) => l.msg === 'failed');
    assert.ok(failed);
    assert.equal(failed.level, 'warn');
    assert.equal(failed.rcpt, 'bad@dst.test');
    assert.equal(failed.code, 550);
    const bounce = lines.find((l) => l.msg === 'delivered' && l.rcpt === 'a@src.test');
    assert.ok(bounce, 'the bounce to the sender is delivered');
    assert.notEqual(bounce.id, failed.id);
  });
});
