// Daemon-to-sink delivery: a logmta relays everything (`[[route]] domain = "*"`) to an SmtpSink
// that misbehaves on cue. Each test asserts what the sink received (exactly once, except where
// the sink dropped the connection after taking the data), what was deferred and what bounced.
// Retries use a 1 s ladder so the whole file runs in a few seconds of real time.
import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';
import { type SinkOptions, SmtpSink } from '../support/sink.js';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';
import { startRelayDaemon, type TestDaemon } from '../support/daemon.js';
import { waitFor } from '../support/wait.js';

const opened: Array<{ stop?: () => Promise<void>; close?: () => Promise<void> }> = [];

async function setup(sinkOpts: SinkOptions = {}, extra = ''): Promise<{ sink: SmtpSink; d: TestDaemon }> {
  const sink = await SmtpSink.start(sinkOpts);
  opened.push(sink);
  const d = await startRelayDaemon(
    `[queue]\nretry = ["1s", "1s"]\n${extra}\n[[route]]\ndomain = "*"\nhost = "127.0.0.1:${sink.port}"\n`,
  );
  opened.push(d);
  return { sink, d };
}

afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await (o.stop ?? o.close)?.call(o);
});
after(async () => {
  for (const o of opened.splice(0).reverse()) await (o.stop ?? o.close)?.call(o);
});

const to = (sink: SmtpSink, rcpt: string) => sink.transactions.filter((t) => t.recipients.includes(rcpt));
const bounces = (sink: SmtpSink) => sink.transactions.filter((t) => t.sender === '');

describe('delivery to a well-behaved next hop', () => {
  test('a message is delivered once, byte for byte, with its envelope', async () => {
    const { sink, d } = await setup();
    await sendMail(d.port, { from: 'a@src.test', to: ['x@dst.test', 'y@dst.test'], subject: 'hello' });
    await waitFor(() => d.settled(), 'queue to empty', 5000);
    assert.equal(sink.transactions.length, 1, 'both recipients in one transaction');
    const tx = sink.transactions[0]!;
    assert.equal(tx.sender, 'a@src.test');
    assert.deepEqual(tx.recipients, ['x@dst.test', 'y@dst.test']);
    assert.match(tx.data.toString(), /^Received: from injector\.test/);
    assert.match(tx.data.toString(), /Subject: hello\r\n/);
    assert.equal(d.outcomes().filter((o) => o.msg === 'delivered').length, 2);
  });

  test('messages in sequence reuse one connection', async () => {
    const { sink, d } = await setup();
    for (let i = 0; i < 5; i++) {
      await sendMail(d.port, { from: 'a@src.test', to: [`u${i}@dst.test`] });
      await waitFor(() => sink.transactions.length === i + 1, `message ${i}`, 5000);
    }
    assert.equal(sink.connections, 1);
    assert.equal(d.daemon.pool.stats.reused, 4);
    // Later messages on the connection start with RSET.
    assert.equal(sink.commands.filter((c) => c === 'RSET').length, 4);
  });

  test('the per-destination concurrency limit caps simultaneous connections', async () => {
    const { sink, d } = await setup({ delayMs: 15 }, '[delivery]\nconcurrency_per_destination = 3');
    let maxActive = 0;
    const timer = setInterval(() => {
      for (const s of d.daemon.pool.snapshot()) maxActive = Math.max(maxActive, s.active);
    }, 2);
    try {
      await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          sendMail(d.port, { from: 'a@src.test', to: [`c${i}@dst.test`] }),
        ),
      );
      await waitFor(() => sink.transactions.length === 24, '24 deliveries', 15000);
    } finally {
      clearInterval(timer);
    }
    assert.ok(sink.connections <= 3, `at most 3 connections, saw ${sink.connections}`);
    assert.ok(maxActive <= 3 && maxActive >= 2, `active leases ${maxActive}`);
    assert.equal(new Set(sink.transactions.map((t) => t.recipients[0])).size, 24, 'no duplicates');
  });

  test('with PIPELINING the envelope goes out in one group; without it, one command at a time', async () => {
    const a = await setup({ pipelining: true });
    await sendMail(a.d.port, { from: 'a@src.test', to: ['p1@dst.test', 'p2@dst.test'] });
    await a.sink.waitForTransactions(1);
    assert.ok(
      a.sink.batches.some((b) => b.length === 4 && b[0]!.startsWith('MAIL') && b[3] === 'DATA'),
      JSON.stringify(a.sink.batches),
    );
    const b = await setup({ pipelining: false });
    await sendMail(b.d.port, { from: 'a@src.test', to: ['p1@dst.test', 'p2@dst.test'] });
    await b.sink.waitForTransactions(1);
    assert.ok(
      b.sink.batches.every((x) => x.length === 1),
      JSON.stringify(b.sink.batches),
    );
    assert.deepEqual(b.sink.transactions[0]!.recipients, ['p1@dst.test', 'p2@dst.test']);
  });

  test('STARTTLS is used when offered and skipped when not (opportunistic)', async () => {
    const a = await setup({ starttls: true });
    await sendMail(a.d.port, { from: 'a@src.test', to: ['t@dst.test'] });
    await a.sink.waitForTransactions(1);
    assert.equal(a.sink.transactions[0]!.tls, true);
    const b = await setup({ starttls: false });
    await sendMail(b.d.port, { from: 'a@src.test', to: ['t@dst.test'] });
    await b.sink.waitForTransactions(1);
    assert.equal(b.sink.transactions[0]!.tls, false);
  });

  test('slow replies are waited for, not treated as failures', async () => {
    const { sink, d } = await setup({ delayMs: 150 });
    await sendMail(d.port, { from: 'a@src.test', to: ['slow@dst.test'] });
    await waitFor(() => d.settled(), 'queue to empty', 8000);
    assert.equal(to(sink, 'slow@dst.test').length, 1);
    assert.equal(d.outcomes('slow@dst.test')[0]?.msg, 'delivered');
  });

  test('452 to some recipients: the rest go in the next transaction on the same connection', async () => {
    const { sink, d } = await setup({ maxRecipients: 2 });
    const rcpts = ['r1', 'r2', 'r3', 'r4', 'r5'].map((r) => `${r}@dst.test`);
    await sendMail(d.port, { from: 'a@src.test', to: rcpts });
    await waitFor(() => d.settled(), 'queue to empty', 5000);
    assert.deepEqual(
      sink.transactions.map((t) => t.recipients),
      [rcpts.slice(0, 2), rcpts.slice(2, 4), rcpts.slice(4)],
    );
    assert.equal(sink.connections, 1);
    assert.equal(d.outcomes().filter((o) => o.msg === 'deferred').length, 0);
  });
});

describe('delivery to a next hop that fails on cue', () => {
  test('4xx on RCPT defers the recipient; it is retried and delivered once', async () => {
    let refusals = 0;
    const { sink, d } = await setup({
      rcptReply: (addr) =>
        addr === 'later@dst.test' && refusals++ < 2 ? '450 4.2.0 mailbox busy' : undefined,
    });
    await sendMail(d.port, { from: 'a@src.test', to: ['now@dst.test', 'later@dst.test'] });
    await waitFor(() => d.settled(), 'queue to empty', 10000);
    assert.equal(to(sink, 'now@dst.test').length, 1);
    assert.equal(to(sink, 'later@dst.test').length, 1);
    assert.deepEqual(
      d.outcomes('later@dst.test').map((o) => [o.msg, o.fields.code]),
      [
        ['deferred', 450],
        ['deferred', 450],
        ['delivered', 250],
      ],
    );
    assert.equal(bounces(sink).length, 0);
  });

  test('5xx on RCPT fails the recipient and bounces an RFC 3464 report to the sender', async () => {
    const { sink, d } = await setup({
      rcptReply: (addr) => (addr === 'nobody@dst.test' ? '550 5.1.1 no such user here' : undefined),
    });
    await sendMail(d.port, {
      from: 'alice@src.test',
      to: ['ok@dst.test', 'nobody@dst.test'],
      envid: 'ENV-1',
    });
    await waitFor(() => bounces(sink).length === 1 && d.settled(), 'the bounce', 5000);
    assert.equal(to(sink, 'ok@dst.test').length, 1);
    assert.equal(to(sink, 'nobody@dst.test').length, 0);
    const b = bounces(sink)[0]!;
    assert.deepEqual(b.recipients, ['alice@src.test']);
    const dsn = parseDsn(b.data);
    assert.match(dsn.contentType, /multipart\/report;.*report-type=delivery-status/s);
    assert.equal(dsn.message['reporting-mta'], 'dns; relay.test');
    assert.equal(dsn.message['original-envelope-id'], 'ENV-1');
    assert.equal(dsn.recipients.length, 1);
    const r = dsn.recipients[0]!;
    assert.equal(r['final-recipient'], 'rfc822; nobody@dst.test');
    assert.equal(r.action, 'failed');
    assert.equal(r.status, '5.1.1');
    assert.equal(r['remote-mta'], 'dns; 127.0.0.1');
    assert.match(r['diagnostic-code'] ?? '', /^smtp; 550 5\.1\.1 no such user here$/);
    assert.match(b.data.toString(), /^To: <?alice@src\.test>?/m);
    // Exactly one bounce, no report about it, and nothing left queued.
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(bounces(sink).length, 1);
  });

  test('4xx after the dot: the message is not delivered then, and delivered once on retry', async () => {
    let n = 0;
    const { sink, d } = await setup({
      dataReply: () => (n++ === 0 ? '451 4.3.0 queue file write error' : undefined),
    });
    await sendMail(d.port, { from: 'a@src.test', to: ['dot@dst.test'] });
    await waitFor(() => d.settled(), 'queue to empty', 8000);
    assert.equal(to(sink, 'dot@dst.test').length, 1);
    assert.deepEqual(
      d.outcomes('dot@dst.test').map((o) => o.msg),
      ['deferred', 'delivered'],
    );
  });

  test('5xx after the dot bounces every recipient of the transaction', async () => {
    const { sink, d } = await setup({
      dataReply: (tx) => (tx.sender === '' ? undefined : '554 5.6.0 content rejected'),
    });
    await sendMail(d.port, { from: 'a@src.test', to: ['d1@dst.test', 'd2@dst.test'] });
    await waitFor(() => bounces(sink).length === 1 && d.settled(), 'the bounce', 5000);
    const dsn = parseDsn(bounces(sink)[0]!.data);
    assert.deepEqual(
      dsn.recipients.map((r) => [r['final-recipient'], r.status]),
      [
        ['rfc822; d1@dst.test', '5.6.0'],
        ['rfc822; d2@dst.test', '5.6.0'],
      ],
    );
  });

  test('a disconnect during DATA defers; the retry delivers exactly once', async () => {
    const { sink, d } = await setup({ disconnectDuringData: true });
    await sendMail(d.port, { from: 'a@src.test', to: ['cut@dst.test'] });
    await waitFor(() => d.outcomes('cut@dst.test').length >= 1, 'first attempt', 5000);
    assert.equal(d.outcomes('cut@dst.test')[0]!.msg, 'deferred');
    sink.opts.disconnectDuringData = false;
    await waitFor(() => d.settled(), 'queue to empty', 8000);
    assert.equal(to(sink, 'cut@dst.test').length, 1);
  });

  test('a drop after the data was taken is the one case that delivers twice', async () => {
    const { sink, d } = await setup({ dropAfterData: true });
    await sendMail(d.port, { from: 'a@src.test', to: ['dup@dst.test'] });
    await waitFor(() => d.outcomes('dup@dst.test').length >= 1, 'first attempt', 5000);
    assert.equal(d.outcomes('dup@dst.test')[0]!.msg, 'deferred');
    sink.opts.dropAfterData = false;
    await waitFor(() => d.settled(), 'queue to empty', 8000);
    assert.equal(to(sink, 'dup@dst.test').length, 2, 'the sink kept the first copy without answering');
  });

  test('a 554 greeting defers rather than bounces (the host may come back)', async () => {
    const { sink, d } = await setup({ greeting: '554 5.3.2 no service today' });
    await sendMail(d.port, { from: 'a@src.test', to: ['closed@dst.test'] });
    await waitFor(() => d.outcomes('closed@dst.test').length >= 1, 'first attempt', 5000);
    assert.equal(d.outcomes('closed@dst.test')[0]!.msg, 'deferred');
    assert.equal(sink.transactions.length, 0);
    assert.equal(bounces(sink).length, 0);
  });

  test('a 421 greeting defers, and the destination is retried later', async () => {
    const { sink, d } = await setup({ greeting: '421 4.3.2 too busy' });
    await sendMail(d.port, { from: 'a@src.test', to: ['busy@dst.test'] });
    await waitFor(() => d.outcomes('busy@dst.test').length >= 1, 'first attempt', 5000);
    assert.equal(d.outcomes('busy@dst.test')[0]!.msg, 'deferred');
    assert.equal(sink.transactions.length, 0);
    assert.equal(bounces(sink).length, 0);
  });
});
