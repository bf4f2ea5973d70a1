// Relaying with the end of data and the next envelope in one write (RFC 2920): a real
// `logmta serve` relays to a pipelining sink over one connection (concurrency_per_destination = 1),
// so that messages queue for it. What the next hop and the senders end up with: every message
// once, in whole; the next envelope in the same read as the end of data before it; a message
// refused at its end of data bounced while the one pipelined behind it is delivered; a drop right
// after an end of data costs a duplicate of that message at most, never the one behind it.
import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';
import { relayToml, type SpawnedDaemon, spawnDaemon } from '../support/daemon.js';
import { sendMail } from '../support/inject.js';
import { type SinkOptions, SmtpSink } from '../support/sink.js';
import { waitFor } from '../support/wait.js';

const opened: Array<{ stop: () => Promise<unknown> }> = [];
const stopAll = async () => {
  for (const o of opened.splice(0).reverse()) await o.stop();
};
afterEach(stopAll);
after(stopAll);

async function setup(sinkOpts: SinkOptions): Promise<{ sink: SmtpSink; d: SpawnedDaemon }> {
  const sink = await SmtpSink.start({ pipelining: true, keepReads: true, ...sinkOpts });
  opened.push({ stop: () => sink.close() });
  const d = await spawnDaemon({
    toml: relayToml(
      `[queue]\nretry = ["1s", "1s"]\n[delivery]\nconcurrency_per_destination = 1\n` +
        `[[route]]\ndomain = "*"\nhost = "127.0.0.1:${sink.port}"\n`,
    ),
  });
  opened.push({ stop: () => d.stop() });
  return { sink, d };
}

/** Reads at the sink in which an end of data is followed by the next transaction's commands. */
const merged = (sink: SmtpSink) =>
  sink.reads.filter((b) => /\r\n\.\r\n(RSET|MAIL FROM:)/.test(b.toString('latin1'))).length;
const to = (sink: SmtpSink, rcpt: string) => sink.transactions.filter((t) => t.recipients.includes(rcpt));

describe('relaying with the end of data pipelined with the next envelope', () => {
  test('messages waiting for the one connection follow each end of data in the same write, each arrives once and whole', async () => {
    // Each reply a little late, so the messages really queue behind one another.
    const { sink, d } = await setup({ delayMs: 5 });
    const n = 20;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        sendMail(d.port, { from: 'a@src.test', to: [`m${i}@dst.test`], body: `message ${i}\r\n` }),
      ),
    );
    await waitFor(() => sink.transactions.length >= n, `${n} deliveries`, 15_000);
    await new Promise((r) => setTimeout(r, 300)); // a duplicate would arrive by now
    assert.equal(sink.transactions.length, n, 'no message twice');
    for (let i = 0; i < n; i++) {
      const got = to(sink, `m${i}@dst.test`);
      assert.equal(got.length, 1, `m${i} once`);
      assert.match(got[0]!.data.toString(), new RegExp(`message ${i}\\r\\n$`), `m${i} whole`);
    }
    assert.equal(sink.connections, 1, 'one connection carried them all');
    assert.ok(
      merged(sink) >= n / 4,
      `end of data and next envelope in one read ${merged(sink)} times of ${n}`,
    );
  });

  test('a message refused at its end of data is bounced while the one pipelined behind it is delivered', async () => {
    const { sink, d } = await setup({
      delayMs: 20,
      dataReply: (tx) =>
        tx.recipients.includes('refused@dst.test') ? '554 5.6.0 content rejected' : undefined,
    });
    await Promise.all([
      sendMail(d.port, { from: 'a@src.test', to: ['refused@dst.test'] }),
      sendMail(d.port, { from: 'b@src.test', to: ['next@dst.test'] }),
      sendMail(d.port, { from: 'c@src.test', to: ['third@dst.test'] }),
    ]);
    await waitFor(
      () => to(sink, 'next@dst.test').length + to(sink, 'third@dst.test').length === 2,
      'the others delivered',
      10_000,
    );
    await waitFor(
      () => sink.transactions.some((t) => t.sender === '' && t.recipients.includes('a@src.test')),
      'the bounce',
      10_000,
    );
    assert.equal(to(sink, 'refused@dst.test').length, 0, 'the refused message is not taken');
    const bounce = sink.transactions.find((t) => t.sender === '')!;
    assert.match(bounce.data.toString(), /554 5\.6\.0 content rejected/);
    assert.ok(merged(sink) >= 1, 'a next envelope followed an end of data in the same read');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(to(sink, 'next@dst.test').length, 1);
    assert.equal(to(sink, 'third@dst.test').length, 1);
  });

  test('a drop right after an end of data with the next envelope behind it: that message may come twice, the next one comes once', async () => {
    let dropped: string | undefined;
    const { sink, d } = await setup({
      delayMs: 20,
      // The first end of data to arrive: recorded, then the connection closes unanswered, taking
      // the envelope pipelined behind it along.
      dropAfterData: (tx) => {
        if (dropped !== undefined) return false;
        dropped = tx.recipients[0];
        return true;
      },
    });
    await Promise.all([
      sendMail(d.port, { from: 'a@src.test', to: ['one@dst.test'] }),
      sendMail(d.port, { from: 'b@src.test', to: ['two@dst.test'] }),
    ]);
    await waitFor(() => dropped !== undefined, 'the drop', 10_000);
    const other = dropped === 'one@dst.test' ? 'two@dst.test' : 'one@dst.test';
    await waitFor(() => to(sink, other).length >= 1, 'the message behind the drop', 15_000);
    await waitFor(() => to(sink, dropped!).length >= 2, 'the dropped one again (its 250 was lost)', 15_000);
    await new Promise((r) => setTimeout(r, 1_500)); // past a retry: nothing else arrives
    assert.equal(to(sink, other).length, 1, 'the message behind the drop exactly once');
    assert.equal(to(sink, dropped!).length, 2, 'the dropped one once more, no more');
    assert.ok(merged(sink) >= 1, 'the other envelope had followed the dropped end of data');
  });

  test('a message split by 452 (too many recipients) keeps the connection for its second transaction; the one waiting goes after it', async () => {
    const { sink, d } = await setup({ delayMs: 5, maxRecipients: 2 });
    const many = ['r1@dst.test', 'r2@dst.test', 'r3@dst.test', 'r4@dst.test'];
    await Promise.all([
      sendMail(d.port, { from: 'a@src.test', to: many }),
      sendMail(d.port, { from: 'b@src.test', to: ['solo@dst.test'] }),
      sendMail(d.port, { from: 'c@src.test', to: ['solo2@dst.test'] }),
    ]);
    await waitFor(
      () => [...many, 'solo@dst.test', 'solo2@dst.test'].every((r) => to(sink, r).length >= 1),
      'every recipient',
      10_000,
    );
    await new Promise((r) => setTimeout(r, 300));
    for (const r of [...many, 'solo@dst.test', 'solo2@dst.test'])
      assert.equal(to(sink, r).length, 1, `${r} once`);
    const split = sink.transactions.filter((t) => t.sender === 'a@src.test');
    assert.deepEqual(
      split.map((t) => t.recipients.length),
      [2, 2],
      'the four recipients in two transactions of two',
    );
    assert.equal(sink.transactions.filter((t) => t.sender === '').length, 0, 'no bounce');
    assert.doesNotMatch(d.stdout(), /"msg":"deferred"/, 'nothing deferred: the split was sent at once');
  });

  test('over STARTTLS too: the envelope follows the end of data inside the TLS stream, each message once and whole', async () => {
    const { sink, d } = await setup({ delayMs: 5, starttls: true });
    const n = 12;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        sendMail(d.port, { from: 'a@src.test', to: [`t${i}@dst.test`], body: `secret ${i}\r\n` }),
      ),
    );
    await waitFor(() => sink.transactions.length >= n, `${n} deliveries`, 15_000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink.transactions.length, n, 'no message twice');
    for (let i = 0; i < n; i++) {
      const got = to(sink, `t${i}@dst.test`);
      assert.equal(got.length, 1, `t${i} once`);
      assert.equal(got[0]!.tls, true, `t${i} over TLS`);
      assert.match(got[0]!.data.toString(), new RegExp(`secret ${i}\\r\\n$`), `t${i} whole`);
    }
    assert.ok(merged(sink) >= 1, `end of data and next envelope in one read ${merged(sink)} times`);
  });
});
