import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ServerHooks, SessionContext, SmtpReply } from './hooks.js';
import { Harness } from '../../../test/support/session.js';
import { tick } from '../../../test/support/wait.js';
import { chunksOf } from './message-data.js';

const codes = Harness.codes;
const later = <T>(v: T): Promise<T> => new Promise((r) => setImmediate(() => r(v)));

/** Records the filter stage hooks in call order. */
function recorder(over: Partial<ServerHooks> = {}): { calls: string[]; hooks: Partial<ServerHooks> } {
  const calls: string[] = [];
  const ctxs = new Set<SessionContext>();
  const hooks: Partial<ServerHooks> = {
    connect: (ctx) => {
      ctxs.add(ctx);
      calls.push(`connect ${ctx.client.ip}`);
      return later(null);
    },
    checkHelo: (name, ctx) => {
      ctxs.add(ctx);
      calls.push(`helo ${name}`);
      return null;
    },
    checkSender: (a, _c, params) => {
      calls.push(`mail ${a} ${(params ?? []).join(',')}`);
      return later(null);
    },
    checkRecipient: (a, _c, params) => {
      calls.push(`rcpt ${a} ${(params ?? []).join(',')}`);
      return null;
    },
    checkData: () => {
      calls.push('data');
      return later(null);
    },
    abort: () => void calls.push('abort'),
    disconnect: (ctx) => {
      ctxs.add(ctx);
      calls.push(`disconnect ${ctxs.size}`);
    },
    ...over,
  };
  return { calls, hooks };
}

describe('session: filter stage hooks', () => {
  test('each stage hook is called in protocol order with the same session context', async () => {
    const r = recorder();
    const h = new Harness({ hooks: r.hooks });
    await tick();
    assert.equal(h.output(), '220 mx.test ESMTP logmta\r\n');
    const out = await h.send(
      'EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<x@y.example> NOTIFY=NEVER\r\nDATA\r\n',
    );
    assert.deepEqual(codes(out), ['250', '250 2.1.0', '250 2.1.5', '354']);
    assert.deepEqual(codes(await h.send('Subject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n')), [
      '250 2.0.0',
      '221 2.0.0',
    ]);
    h.session.onClose();
    assert.deepEqual(r.calls, [
      'connect 192.0.2.7',
      'helo c.example',
      'mail a@b.example SIZE=10,BODY=8BITMIME',
      'rcpt x@y.example NOTIFY=NEVER',
      'data',
      'disconnect 1',
    ]);
    assert.equal(h.accepted.length, 1);
    assert.equal(h.accepted[0]?.received, chunksOf(h.accepted[0]?.data)[0], 'received is the first chunk');
  });

  test('input sent before an asynchronous connect hook answers waits for the greeting', async () => {
    const r = recorder();
    const h = new Harness({ hooks: r.hooks });
    h.session.feed(Buffer.from('EHLO early\r\n'));
    await tick();
    await tick();
    const out = h.output() + (await h.send(''));
    assert.ok(out.startsWith('220 '), out);
    assert.match(out, /250-mx.test Hello early/);
  });

  test('a 5xx at connect gives a 554 greeting and every MAIL and ETRN the reason', async () => {
    const refusal: SmtpReply = { code: 550, enhanced: '5.7.1', text: 'go away' };
    const h = new Harness({
      hooks: { connect: () => later(refusal), etrn: () => ({ code: 250, text: 'started' }) },
    });
    await tick();
    assert.equal(h.output(), '554 mx.test ESMTP not accepting connections\r\n');
    const out = await h.send('EHLO c\r\nMAIL FROM:<a@b.c>\r\nETRN x.example\r\nQUIT\r\n');
    assert.deepEqual(codes(out), ['250', '550 5.7.1', '550 5.7.1', '221 2.0.0']);
  });

  test('a 4xx at connect greets with 220 and tempfails every MAIL', async () => {
    const h = new Harness({ hooks: { connect: () => ({ code: 451, enhanced: '4.7.1', text: 'later' }) } });
    const out = await h.send('EHLO c\r\nMAIL FROM:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\n');
    assert.deepEqual(codes(out), ['250', '451 4.7.1', '451 4.7.1']);
    assert.match(h.io.writes[0] ?? '', /^220 /);
  });

  test('a 421 at connect is the greeting and the connection is closed', async () => {
    const h = new Harness({
      hooks: { connect: () => later({ code: 421, enhanced: '4.7.0', text: 'busy' }) },
    });
    await tick();
    assert.equal(h.output(), '421 4.7.0 busy\r\n');
    assert.equal(h.io.closed, true);
  });

  test('a connect hook that throws closes with 421 instead of greeting', async () => {
    const h = new Harness({
      hooks: {
        connect: () => {
          throw new Error('bug');
        },
      },
    });
    assert.match(h.io.writes[0] ?? '', /^421 4\.3\.0 /);
    assert.equal(h.io.closed, true);
  });

  test('a HELO refusal answers MAIL until the next HELO, which may clear it', async () => {
    let n = 0;
    const h = new Harness({
      hooks: { checkHelo: () => (++n === 1 ? { code: 550, enhanced: '5.7.1', text: 'bad helo' } : null) },
    });
    const out = await h.send('EHLO bad\r\nMAIL FROM:<a@b.c>\r\nEHLO good\r\nMAIL FROM:<a@b.c>\r\n');
    assert.deepEqual(codes(out), ['250', '550 5.7.1', '250', '250 2.1.0']);
  });

  test('a 421 from the HELO hook closes the session', async () => {
    const h = new Harness({ hooks: { checkHelo: () => ({ code: 421, enhanced: '4.7.0', text: 'bye' }) } });
    assert.deepEqual(codes(await h.send('EHLO c\r\nMAIL FROM:<a@b.c>\r\n')), ['421 4.7.0']);
    assert.equal(h.io.closed, true);
  });

  test('a refused DATA ends the transaction (abort) and the next DATA is out of sequence', async () => {
    const r = recorder({ checkData: () => later({ code: 550, enhanced: '5.7.1', text: 'no data' }) });
    const h = new Harness({ hooks: r.hooks });
    await h.transaction();
    assert.deepEqual(codes(await h.send('DATA\r\nDATA\r\n')), ['550 5.7.1', '503 5.5.1']);
    assert.ok(r.calls.includes('abort'));
  });

  test('a refused first BDAT chunk is read, answered with the reply, and the transaction ends', async () => {
    const r = recorder({ checkData: () => later({ code: 451, enhanced: '4.7.1', text: 'later' }) });
    const h = new Harness({ hooks: r.hooks });
    await h.transaction();
    const out = await h.send('BDAT 5\r\nhello');
    assert.deepEqual(codes(out), ['451 4.7.1']);
    // The chunks the client pipelined behind it get the same (temporary) reply up to LAST: a
    // client that takes LAST's reply for the message's fate retries rather than bounces.
    assert.deepEqual(codes(await h.send('BDAT 3 LAST\r\nabc')), ['451 4.7.1']);
    assert.deepEqual(codes(await h.send('BDAT 1 LAST\r\nx')), ['503 5.5.1'], 'after LAST: out of sequence');
    assert.ok(r.calls.includes('abort'));
    assert.equal(h.accepted.length, 0);
    assert.deepEqual(codes(await h.send('NOOP\r\n')), ['250 2.0.0'], 'the stream stayed in step');
  });

  test('BDAT runs the DATA hook once per transaction, before its first chunk', async () => {
    const r = recorder();
    const h = new Harness({ hooks: r.hooks });
    await h.transaction();
    const out = await h.send('BDAT 4\r\nSubjBDAT 10 LAST\r\nect: x\r\n\r\n');
    assert.deepEqual(codes(out), ['250 2.0.0', '250 2.0.0']);
    assert.equal(r.calls.filter((c) => c === 'data').length, 1);
    assert.equal(h.accepted.length, 1);
  });

  test('RSET and a new EHLO abort the transaction; a finished message does not', async () => {
    const r = recorder();
    const h = new Harness({ hooks: r.hooks });
    await h.transaction();
    await h.send('RSET\r\n');
    await h.transaction();
    await h.send('DATA\r\nx\r\n.\r\n');
    await h.send('MAIL FROM:<a@b.c>\r\nEHLO again\r\n');
    assert.equal(r.calls.filter((c) => c === 'abort').length, 2);
  });

  test('a connection lost inside a transaction aborts it, then disconnects once', async () => {
    const r = recorder();
    const h = new Harness({ hooks: r.hooks });
    await h.transaction();
    h.session.onClose();
    h.session.onClose();
    assert.deepEqual(r.calls.slice(-2), ['abort', 'disconnect 1']);
  });
});
