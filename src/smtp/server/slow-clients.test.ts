// Slow clients (slowloris) against the session's deadlines, on a manual clock: a byte every
// second restarts the idle timer but never a deadline, so a trickled command line, SASL line,
// DATA line, DATA body of short lines or BDAT chunk is cut with 421 4.4.2; time the server spends
// on a pending hook is not the client's; a client at a normal pace is never cut. Plus the
// Deadlines bookkeeping on its own. One test per way of being slow.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Deadlines } from './deadlines.js';
import { Harness } from '../../../test/support/session.js';
import { tick } from '../../../test/support/wait.js';

const LIMITS = {
  idleTimeoutMs: 10_000,
  commandTimeoutMs: 10_000,
  dataLineTimeoutMs: 10_000,
  minDataRate: 100,
};
const codes = Harness.codes;

/** Feeds `text` one byte per `stepMs`, running the sweep after each; returns ms until closed (or -1). */
async function trickle(h: Harness, text: string, stepMs = 1_000): Promise<number> {
  const t0 = h.clock.now();
  for (const ch of Buffer.from(text, 'latin1')) {
    if (h.io.closed) break;
    h.clock.advance(stepMs);
    h.session.checkIdle(h.clock.now());
    if (h.io.closed) break;
    h.session.feed(Buffer.from([ch]));
    await tick();
  }
  return h.io.closed ? h.clock.now() - t0 : -1;
}

describe('slow clients are cut by deadlines, not by silence', () => {
  test('a command line trickled at 1 byte/s is cut at command_timeout (421 4.4.2) though bytes keep coming', async () => {
    const h = new Harness({ options: LIMITS });
    const ms = await trickle(h, `EHLO ${'x'.repeat(40)}\r\n`);
    assert.ok(ms > 10_000 && ms <= 11_000, `closed after ${ms} ms`);
    assert.deepEqual(codes(h.output()), ['421 4.4.2']);
  });

  test('the same trickle is never cut by the idle timeout alone (the defect: every byte restarts it)', async () => {
    const h = new Harness({ options: { ...LIMITS, commandTimeoutMs: 3_600_000 } });
    assert.equal(await trickle(h, 'EHLO abcdefghijklmnopqrstuvwxyz'), -1);
  });

  test('an AUTH LOGIN answer trickled at 1 byte/s is cut at command_timeout', async () => {
    const h = new Harness({
      options: LIMITS,
      peer: { remoteAddress: '127.0.0.1' },
      hooks: { verifyPassword: () => true },
    });
    assert.match(await h.send('EHLO c\r\nAUTH LOGIN\r\n'), /334 /);
    assert.ok((await trickle(h, `${'QUFB'.repeat(10)}\r\n`)) > 10_000);
    assert.deepEqual(codes(h.output()), ['421 4.4.2']);
  });

  test('a DATA line trickled at 1 byte/s is cut at data_line_timeout', async () => {
    const h = new Harness({ options: { ...LIMITS, minDataRate: 0 } });
    await h.transaction();
    assert.match(await h.send('DATA\r\n'), /^354 /);
    const ms = await trickle(h, `Subject: ${'y'.repeat(40)}\r\n`);
    assert.ok(ms > 10_000 && ms <= 11_000, `closed after ${ms} ms`);
    assert.deepEqual(codes(h.output()), ['421 4.4.2']);
    assert.equal(h.accepted.length, 0);
  });

  test('DATA as short lines at 2 bytes/s meets every line deadline but not min_data_rate', async () => {
    const h = new Harness({ options: LIMITS });
    await h.transaction();
    await h.send('DATA\r\n');
    const ms = await trickle(h, 'a\r\n'.repeat(40), 500);
    // Allowed: 10 s + octets/100 per s; at 6 octets/s the allowance runs out just after 10 s.
    assert.ok(ms > 10_000 && ms < 12_000, `closed after ${ms} ms`);
    assert.match(h.output(), /^421 4\.4\.2 mx\.test Error: data rate too low\r\n$/m);
  });

  test('a BDAT chunk trickled at 1 byte/s is cut by min_data_rate', async () => {
    const h = new Harness({ options: LIMITS });
    await h.transaction();
    await h.send('BDAT 100 LAST\r\n');
    const ms = await trickle(h, 'z'.repeat(100));
    assert.ok(ms > 10_000 && ms < 12_000, `closed after ${ms} ms`);
    assert.deepEqual(codes(h.output()), ['421 4.4.2']);
  });

  test('a TLS handshake that never completes is cut at command_timeout, without a reply', async () => {
    const h = new Harness({ options: LIMITS, tls: true });
    await h.send('EHLO c\r\nSTARTTLS\r\n');
    h.output();
    h.clock.advance(9_000);
    h.session.feed(Buffer.from([0x16])); // plaintext bytes during the handshake are dropped
    h.session.checkIdle(h.clock.now());
    assert.equal(h.io.closed, false);
    h.clock.advance(1_500);
    h.session.checkIdle(h.clock.now());
    assert.equal(h.io.destroyed, true);
    assert.equal(h.output(), '');
  });

  test('time the server spends on a pending commit is not counted against the client', async () => {
    let release: () => void = () => {};
    const h = new Harness({
      options: LIMITS,
      hooks: {
        accept: (m) =>
          new Promise((res) => {
            release = () => res({ queueId: m.id });
          }),
      },
    });
    await h.transaction();
    await h.send('DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n');
    h.output();
    h.clock.advance(60_000); // a slow commit: a minute
    h.session.checkIdle(h.clock.now());
    assert.equal(h.io.closed, false, 'cut while the server itself was busy');
    release();
    await tick();
    await tick();
    assert.deepEqual(codes(h.output()), ['250 2.0.0']);
    // The next command has its whole deadline, counted from the 250.
    h.clock.advance(9_000);
    h.session.checkIdle(h.clock.now());
    assert.equal(h.io.closed, false);
    assert.deepEqual(codes(await h.send('NOOP\r\n')), ['250 2.0.0']);
  });

  test('a client at a normal pace with pauses under the limits is never cut', async () => {
    const h = new Harness({ options: LIMITS });
    const step = async (text: string): Promise<string> => {
      h.clock.advance(8_000);
      h.session.checkIdle(h.clock.now());
      assert.equal(h.io.closed, false, `cut before ${JSON.stringify(text)}`);
      return h.send(text);
    };
    await step('EHLO c\r\n');
    await step('MAIL FROM:<a@example.org>\r\n');
    await step('RCPT TO:<b@example.net>\r\n');
    await step('DATA\r\n');
    // 2,000 octets of text at 8 s per 1,000-octet line: above 100 octets/s, each line in time.
    await step(`${'t'.repeat(998)}\r\n`);
    await step(`${'u'.repeat(998)}\r\n`);
    assert.deepEqual(codes(await step('.\r\n')), ['250 2.0.0']);
    assert.equal(h.accepted.length, 1);
  });

  test('silence still ends a session at idle_timeout when that is the shorter limit', async () => {
    const h = new Harness({ options: { ...LIMITS, idleTimeoutMs: 2_000 } });
    h.clock.advance(2_500);
    h.session.checkIdle(h.clock.now());
    assert.deepEqual(codes(h.output()), ['421 4.4.2']);
  });
});

describe('Deadlines', () => {
  const limits = { commandTimeoutMs: 100, dataLineTimeoutMs: 200, minDataRate: 10 };
  test('a command wait expires after its limit and a line end restarts a data line wait', () => {
    const d = new Deadlines(limits, 0);
    assert.equal(d.expired(100, 'command'), null);
    assert.equal(d.expired(101, 'command'), 'command');
    d.ready(150);
    assert.equal(d.expired(200, 'command'), null);
    d.startTransfer(300);
    d.data(5, false, 450);
    assert.equal(d.expired(501, 'line'), 'line');
    d.data(5, true, 450);
    assert.equal(d.expired(600, 'line'), null);
  });
  test('the rate allowance grows by one second per min_data_rate octets; 0 turns it off', () => {
    const d = new Deadlines(limits, 0);
    d.startTransfer(0);
    d.data(10, true, 100); // + 1 s
    assert.equal(d.expired(1_200, 'chunk'), null);
    assert.equal(d.expired(1_201, 'chunk'), 'rate');
    const off = new Deadlines({ ...limits, minDataRate: 0 }, 0);
    off.startTransfer(0);
    assert.equal(off.expired(1_000_000, 'chunk'), null);
  });
  test('a pause shifts every running deadline by its length', () => {
    const d = new Deadlines(limits, 0);
    d.startTransfer(0);
    d.pause(50);
    assert.equal(d.expired(10_000, 'command'), null, 'nothing expires while paused');
    d.resume(1_050);
    assert.equal(d.expired(1_100, 'command'), null);
    assert.equal(d.expired(1_101, 'command'), 'command');
    assert.equal(d.expired(1_200, 'chunk'), null);
    assert.equal(d.expired(1_201, 'chunk'), 'rate');
  });
});
