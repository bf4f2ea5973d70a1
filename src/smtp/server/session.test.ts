import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MtaError } from '../../errors.js';
import type { ServerHooks } from './hooks.js';
import { Harness } from '../../../test/support/session.js';
import { tick } from '../../../test/support/wait.js';
import { chunksOf } from './message-data.js';

const codes = Harness.codes;

describe('session: greeting and EHLO', () => {
  test('greets with 220 and the hostname', () => {
    const h = new Harness();
    assert.equal(h.io.writes[0], '220 mx.test ESMTP logmta\r\n');
  });

  test('EHLO advertises the extensions', async () => {
    const h = new Harness({ options: { maxMessageSize: 1234 } });
    const out = await h.send('EHLO client.example\r\n');
    const lines = out.split('\r\n').filter(Boolean);
    assert.equal(lines[0], '250-mx.test Hello client.example [192.0.2.7]');
    const kw = lines.slice(1).map((l) => l.slice(4));
    assert.deepEqual(kw, [
      'PIPELINING',
      'SIZE 1234',
      '8BITMIME',
      'SMTPUTF8',
      'ENHANCEDSTATUSCODES',
      'CHUNKING',
      'DSN',
    ]);
    assert.match(lines.at(-1) ?? '', /^250 DSN$/);
  });

  test('EHLO adds STARTTLS when TLS is available, AUTH per TLS/loopback rule, ETRN with a hook', async () => {
    const h = new Harness({
      tls: true,
      hooks: { verifyPassword: () => true, cramSecret: () => 's', etrn: () => ({ code: 250, text: 'ok' }) },
    });
    const out = await h.send('EHLO c\r\n');
    assert.match(out, /250-STARTTLS\r\n/);
    assert.match(out, /250-AUTH CRAM-MD5\r\n/); // no PLAIN/LOGIN: no TLS, not loopback
    assert.match(out, /250 ETRN\r\n/);
    const lo = new Harness({ peer: { remoteAddress: '127.0.0.1' }, hooks: { verifyPassword: () => true } });
    assert.match(await lo.send('EHLO c\r\n'), /250 AUTH PLAIN LOGIN\r\n/);
  });

  test('HELO and EHLO need an argument', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await h.send('HELO\r\nEHLO\r\n')), ['501 5.5.4', '501 5.5.4']);
  });

  test('HELO gives a plain 250 and SMTP sessions refuse ESMTP parameters', async () => {
    const h = new Harness();
    assert.equal(await h.send('HELO c\r\n'), '250 mx.test\r\n');
    assert.deepEqual(codes(await h.send('MAIL FROM:<a@b.c> SIZE=10\r\n')), ['555 5.5.4']);
  });
});

describe('session: mail transaction', () => {
  test('a full transaction delivers the message to accept() with envelope, params and data', async () => {
    const h = new Harness();
    await h.send('EHLO client.example\r\n');
    const out = await h.send(
      'MAIL FROM:<a@example.org> SIZE=20 RET=HDRS ENVID=e1 BODY=8BITMIME\r\n' +
        'RCPT TO:<b@example.net> NOTIFY=FAILURE ORCPT=rfc822;b@example.net\r\n' +
        'RCPT TO:<c@example.net>\r\nDATA\r\n',
    );
    assert.deepEqual(codes(out), ['250 2.1.0', '250 2.1.5', '250 2.1.5', '354']);
    const fin = await h.send('Subject: hi\r\n\r\n..dot\r\n.\r\n');
    assert.deepEqual(codes(fin), ['250 2.0.0']);
    assert.match(fin, /queued as M1/);
    const m = h.accepted[0];
    assert.ok(m);
    assert.equal(m.sender, 'a@example.org');
    assert.deepEqual(m.recipients, [
      { address: 'b@example.net', notify: ['FAILURE'], orcpt: { type: 'rfc822', address: 'b@example.net' } },
      { address: 'c@example.net' },
    ]);
    assert.deepEqual(m.params, { ret: 'HDRS', envid: 'e1', body: '8BITMIME', size: 20 });
    assert.equal(Harness.body(m), 'Subject: hi\r\n\r\n.dot\r\n');
    const received = chunksOf(m.data)[0]?.toString() ?? '';
    assert.match(
      received,
      /^Received: from client\.example \(\[192\.0\.2\.7\]\)\r\n\tby mx\.test \(logmta\) with ESMTP id M1; /,
    );
    assert.equal(
      m.size,
      chunksOf(m.data).reduce((n, b) => n + b.length, 0),
    );
    assert.equal(m.client.helo, 'client.example');
    assert.equal(m.receivedAt, h.clock.now());
  });

  test('the null sender is accepted for MAIL, refused for RCPT', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await h.send('EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<>\r\n')), [
      '250',
      '250 2.1.0',
      '501 5.1.3',
    ]);
  });

  test('out of sequence commands get 503 5.5.1', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await h.send('MAIL FROM:<a@b.c>\r\n')), ['503 5.5.1']);
    await h.send('EHLO c\r\n');
    assert.deepEqual(codes(await h.send('RCPT TO:<a@b.c>\r\nDATA\r\n')), ['503 5.5.1', '503 5.5.1']);
    assert.deepEqual(codes(await h.send('MAIL FROM:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\n')), [
      '250 2.1.0',
      '503 5.5.1',
    ]);
    assert.deepEqual(codes(await h.send('DATA\r\n')), ['554 5.5.1']);
  });

  test('RSET ends the transaction; NOOP, VRFY, HELP answer', async () => {
    const h = new Harness();
    await h.transaction();
    assert.deepEqual(codes(await h.send('RSET\r\nDATA\r\n')), ['250 2.0.0', '503 5.5.1']);
    assert.deepEqual(codes(await h.send('NOOP\r\nVRFY bob\r\nVRFY\r\nHELP\r\n')), [
      '250 2.0.0',
      '252 2.5.0',
      '501 5.5.4',
      '214 2.0.0',
    ]);
  });

  test('QUIT replies 221 and closes', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await h.send('QUIT\r\nNOOP\r\n')), ['221 2.0.0']);
    assert.equal(h.io.closed, true);
  });

  test('unknown verbs get 500 5.5.2; known but unimplemented 502 5.5.1', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await h.send('FOO\r\nEXPN x\r\nETRN x\r\n\r\n')), [
      '500 5.5.2',
      '502 5.5.1',
      '502 5.5.1',
      '500 5.5.2',
    ]);
  });

  test('a command line over 512 octets gets 500 5.5.6 and the next line is processed', async () => {
    const h = new Harness();
    const out = await h.send(`NOOP ${'x'.repeat(600)}\r\nNOOP\r\n`);
    assert.deepEqual(codes(out), ['500 5.5.6', '250 2.0.0']);
  });

  test('too many bad commands: 421 4.7.0 and close', async () => {
    const h = new Harness({ options: { maxBadCommands: 10 } });
    const out = await h.send('BAD\r\n'.repeat(12));
    const c = codes(out);
    assert.equal(c.length, 11);
    assert.deepEqual(c.slice(0, 10), Array(10).fill('500 5.5.2'));
    assert.equal(c[10], '421 4.7.0');
    assert.equal(h.io.closed, true);
  });

  test('address syntax errors and unknown parameters', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    assert.deepEqual(
      codes(await h.send('MAIL FROM:<a b@c>\r\nMAIL FROM:<a@b.c> FOO=1\r\nMAIL TO:<a@b.c>\r\n')),
      ['501 5.1.7', '555 5.5.4', '501 5.5.4'],
    );
  });

  test('source routes are accepted and stripped', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\nMAIL FROM:<@r.example:a@b.c>\r\n');
    assert.deepEqual(h.session.tx?.sourceRoute, ['r.example']);
    assert.equal(h.session.tx?.sender, 'a@b.c');
  });

  test('SMTPUTF8 transactions accept UTF-8 addresses; others get 553 5.6.7', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    assert.deepEqual(codes(await h.send('MAIL FROM:<jörg@b.de>\r\n')), ['553 5.6.7']);
    assert.deepEqual(codes(await h.send('MAIL FROM:<jörg@b.de> SMTPUTF8\r\nRCPT TO:<öl@c.de>\r\nDATA\r\n')), [
      '250 2.1.0',
      '250 2.1.5',
      '354',
    ]);
    await h.send('x\r\n.\r\n');
    assert.match(chunksOf(h.accepted[0]?.data)[0]?.toString() ?? '', /with UTF8SMTP id/);
  });

  test('a recipient given again is answered 250 and kept once; other DSN parameters make another', async () => {
    const h = new Harness();
    await h.send('EHLO client.example\r\n');
    const out = await h.send(
      'MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<b@EXAMPLE.net>\r\n' +
        'RCPT TO:<B@example.net>\r\nRCPT TO:<b@example.net> NOTIFY=NEVER\r\nDATA\r\n',
    );
    assert.deepEqual(codes(out), ['250 2.1.0', '250 2.1.5', '250 2.1.5', '250 2.1.5', '250 2.1.5', '354']);
    await h.send('Subject: hi\r\n\r\nx\r\n.\r\n');
    assert.deepEqual(h.accepted[0]?.recipients, [
      { address: 'b@example.net' },
      { address: 'B@example.net' }, // a local part may be case-sensitive (RFC 5321 2.4)
      { address: 'b@example.net', notify: ['NEVER'] },
    ]);
  });

  test('recipients beyond maxRecipients get 452 4.5.3', async () => {
    const h = new Harness({ options: { maxRecipients: 100 } });
    const rcpts = Array.from({ length: 102 }, (_, i) => `r${i}@x.y`);
    const c = codes(await h.transaction('a@b.c', rcpts));
    assert.equal(c.filter((x) => x === '250 2.1.5').length, 100);
    assert.deepEqual(c.slice(-2), ['452 4.5.3', '452 4.5.3']);
  });

  test('SIZE= over the limit is refused at MAIL with 552 5.3.4', async () => {
    const h = new Harness({ options: { maxMessageSize: 1000 } });
    assert.deepEqual(codes(await h.send('EHLO c\r\nMAIL FROM:<a@b.c> SIZE=1001\r\n')), ['250', '552 5.3.4']);
  });

  test('a client lying about SIZE gets 552 5.3.4 after the data and nothing is accepted', async () => {
    const h = new Harness({ options: { maxMessageSize: 1000 } });
    await h.send('EHLO c\r\nMAIL FROM:<a@b.c> SIZE=10\r\nRCPT TO:<x@y.z>\r\nDATA\r\n');
    const out = await h.send(`${'x'.repeat(900)}\r\n${'y'.repeat(900)}\r\n.\r\nNOOP\r\n`);
    assert.deepEqual(codes(out), ['552 5.3.4', '250 2.0.0']);
    assert.equal(h.accepted.length, 0);
    assert.deepEqual(codes(await h.send('RCPT TO:<x@y.z>\r\n')), ['503 5.5.1']);
  });

  test('checkSender and checkRecipient hooks (sync and async) refuse with their reply', async () => {
    const h = new Harness({
      hooks: {
        checkSender: (a) => (a === 'spam@x.y' ? { code: 550, enhanced: '5.7.1', text: 'no' } : null),
        checkRecipient: async (a) =>
          a.startsWith('unknown') ? { code: 550, enhanced: '5.1.1', text: 'User unknown' } : null,
      },
    });
    await h.send('EHLO c\r\n');
    const out = await h.send(
      'MAIL FROM:<spam@x.y>\r\nMAIL FROM:<ok@x.y>\r\nRCPT TO:<unknown@x.y>\r\nRCPT TO:<known@x.y>\r\nDATA\r\n',
    );
    assert.deepEqual(codes(out), ['550 5.7.1', '250 2.1.0', '550 5.1.1', '250 2.1.5', '354']);
  });

  test('submission mode requires AUTH before MAIL (530 5.7.0)', async () => {
    const h = new Harness({ options: { submission: true } });
    assert.deepEqual(codes(await h.send('EHLO c\r\nMAIL FROM:<a@b.c>\r\n')), ['250', '530 5.7.0']);
  });

  test('accept() failures become their SMTP status; plain errors 451 4.3.0', async () => {
    let n = 0;
    const h = new Harness({
      hooks: {
        accept: async () => {
          if (n++ === 0) {
            throw new MtaError('queue.full', 'transient', 'Insufficient system storage', {
              smtp: { code: 452, enhanced: '4.3.1' },
            });
          }
          throw new Error('boom');
        },
      },
    });
    await h.transaction();
    await h.send('DATA\r\n');
    assert.equal(await h.send('x\r\n.\r\n'), '452 4.3.1 Insufficient system storage\r\n');
    await h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n');
    assert.equal(await h.send('x\r\n.\r\n'), '451 4.3.0 Local error in processing\r\n');
  });
});

describe('session: pipelining', () => {
  test('replies of a pipelined group go out in one write', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    const before = h.io.writes.length;
    await h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nRCPT TO:<g@e.f>\r\nDATA\r\n');
    assert.equal(h.io.writes.length - before, 1);
  });

  test('group terminators flush at once', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    const before = h.io.writes.length;
    await h.send('NOOP\r\nNOOP\r\nRSET\r\nRSET\r\n');
    // NOOP, NOOP each flush; the two RSETs are batched at the end of input.
    assert.deepEqual(h.io.writes.slice(before), [
      '250 2.0.0 Ok\r\n',
      '250 2.0.0 Ok\r\n',
      '250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n',
    ]);
  });

  test('commands after the final dot in the same chunk wait for accept and keep their order', async () => {
    let release: () => void = () => {};
    const h = new Harness({
      hooks: {
        accept: (m) =>
          new Promise((res) => {
            release = () => res({ queueId: m.id });
          }),
      },
    });
    await h.transaction();
    await h.send('DATA\r\n');
    const out1 = await h.send(
      'hello\r\n.\r\nMAIL FROM:<x@y.z>\r\nRCPT TO:<q@r.s>\r\nDATA\r\nbody2\r\n.\r\nQUIT\r\n',
    );
    assert.equal(out1, '', 'nothing may be written before the first accept resolves');
    assert.equal(h.session.isReading, true, 'small pending input does not pause reading');
    release();
    await tick();
    const out2 = h.output();
    assert.deepEqual(codes(out2), ['250 2.0.0', '250 2.1.0', '250 2.1.5', '354']);
    release();
    for (let i = 0; i < 3; i++) await tick();
    assert.deepEqual(codes(h.output()), ['250 2.0.0', '221 2.0.0']);
    assert.equal(h.accepted.length, 0); // our accept hook above does not record
  });

  test('two whole transactions pipelined in one chunk are both accepted in order', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    const tx = (n: number) => `MAIL FROM:<a${n}@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nmsg ${n}\r\n.\r\n`;
    await h.send(tx(1));
    const out = await h.send(tx(2) + tx(3));
    assert.equal(h.accepted.length, 3);
    assert.deepEqual(
      h.accepted.map((m) => Harness.body(m)),
      ['msg 1\r\n', 'msg 2\r\n', 'msg 3\r\n'],
    );
    assert.match(out, /queued as M3/);
  });

  test('reading pauses while a commit is pending and a lot of input is buffered', async () => {
    let release: () => void = () => {};
    const h = new Harness({
      options: { readPauseBytes: 1024, maxJunkCommands: 1000 },
      hooks: { accept: (m) => new Promise((res) => (release = () => res({ queueId: m.id }))) },
    });
    await h.transaction();
    await h.send('DATA\r\n');
    await h.send(`x\r\n.\r\n${'NOOP\r\n'.repeat(400)}`);
    assert.equal(h.io.reading, false);
    release();
    await tick();
    assert.equal(h.io.reading, true);
    assert.equal(codes(h.output()).length, 401);
  });

  test('a client that half-closes is answered to the end, its commit included, then closed', async () => {
    let release: () => void = () => {};
    const h = new Harness({
      hooks: { accept: (m) => new Promise((res) => (release = () => res({ queueId: m.id }))) },
    });
    await h.transaction();
    await h.send('DATA\r\nhello\r\n.\r\nQUIT\r\n');
    h.session.onEnd();
    assert.equal(h.io.closed, false, 'the commit is pending: its 250 is still owed');
    release();
    for (let i = 0; i < 3; i++) await tick();
    assert.deepEqual(codes(h.output()), ['250 2.0.0', '221 2.0.0']);
    assert.equal(h.io.closed, true);
  });

  test('a half-close in the middle of DATA abandons the message and closes', async () => {
    const h = new Harness();
    await h.transaction();
    await h.send('DATA\r\nhalf a message\r\n');
    h.session.onEnd();
    await tick();
    assert.equal(h.io.closed, true);
    assert.equal(h.accepted.length, 0);
    assert.equal(h.session.tx, null);
  });

  test('a congested write side stops command processing and reading until drain', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    h.io.writable = false;
    const out = await h.send('NOOP\r\n'.repeat(50));
    assert.equal(h.io.reading, false);
    assert.equal(codes(out).length, 1, 'only the first NOOP was answered');
    assert.ok(h.session.input.buffered > 0);
    h.io.writable = true;
    h.session.onDrain();
    assert.equal(codes(h.output()).length, 49);
    assert.equal(h.io.reading, true);
  });
});

describe('session: data policies', () => {
  async function sendData(h: Harness, body: string): Promise<string> {
    await h.transaction();
    await h.send('DATA\r\n');
    return h.send(body);
  }

  test('a data line over 1000 octets rejects the message with 552 5.6.0', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await sendData(h, `${'x'.repeat(1200)}\r\n.\r\n`)), ['552 5.6.0']);
    assert.equal(h.accepted.length, 0);
  });

  test('bare LF in data is normalised to CRLF', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await sendData(h, 'a\nb\r\n.\r\n')), ['250 2.0.0']);
    assert.equal(Harness.body(h.accepted[0] as never), 'a\r\nb\r\n');
  });

  test('bare CR in data rejects the message with 550 5.6.0', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await sendData(h, 'a\rb\r\n.\r\n')), ['550 5.6.0']);
  });

  test('NUL in data rejects the message with 550 5.6.0', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await sendData(h, 'a\0b\r\n.\r\n')), ['550 5.6.0']);
  });

  test('a "." after a bare LF does not end the data (no smuggling)', async () => {
    const h = new Harness();
    const out = await sendData(h, 'a\n.\nMAIL FROM:<evil@x>\r\n.\r\n');
    assert.deepEqual(codes(out), ['250 2.0.0']);
    assert.equal(h.accepted.length, 1);
    assert.match(Harness.body(h.accepted[0] as never), /MAIL FROM:<evil@x>/);
  });

  test('100 Received: headers are a loop: 554 5.4.6', async () => {
    const h = new Harness();
    const out = await sendData(h, `${'Received: from x by y; date\r\n'.repeat(100)}\r\nbody\r\n.\r\n`);
    assert.deepEqual(codes(out), ['554 5.4.6']);
    const h2 = new Harness();
    const ok = await sendData(h2, `${'Received: from x by y; date\r\n'.repeat(99)}\r\nbody\r\n.\r\n`);
    assert.deepEqual(codes(ok), ['250 2.0.0']);
  });

  test('data arriving one byte at a time is read correctly', async () => {
    const h = new Harness();
    await h.transaction();
    await h.send('DATA\r\n');
    const wire = 'Subject: s\r\n\r\n..a\r\n.\r\n';
    let out = '';
    for (const ch of wire) out += await h.send(ch);
    assert.deepEqual(codes(out), ['250 2.0.0']);
    assert.equal(Harness.body(h.accepted[0] as never), 'Subject: s\r\n\r\n.a\r\n');
  });
});

describe('session: BDAT', () => {
  test('chunks are collected and LAST commits', async () => {
    const h = new Harness();
    await h.transaction();
    const out = await h.send('BDAT 5\r\nhelloBDAT 8 LAST\r\n world\r\nNOOP\r\n');
    assert.deepEqual(codes(out), ['250 2.0.0', '250 2.0.0', '250 2.0.0']);
    assert.match(out, /^250 2\.0\.0 5 octets received\r\n250 2\.0\.0 Ok: queued as M1\r\n/);
    assert.equal(Harness.body(h.accepted[0] as never), 'hello world\r\n');
  });

  test('BDAT 0 LAST ends a chunked message', async () => {
    const h = new Harness();
    await h.transaction();
    const out = await h.send('BDAT 3\r\nabcBDAT 0 LAST\r\n');
    assert.deepEqual(codes(out), ['250 2.0.0', '250 2.0.0']);
    assert.equal(Harness.body(h.accepted[0] as never), 'abc');
  });

  test('a BDAT chunk split over many packets is read exactly', async () => {
    const h = new Harness();
    await h.transaction();
    await h.send('BDAT 10 LAST\r\n01234');
    assert.equal(h.accepted.length, 0);
    const out = await h.send('56789NOOP\r\n');
    assert.deepEqual(codes(out), ['250 2.0.0', '250 2.0.0']);
    assert.equal(Harness.body(h.accepted[0] as never), '0123456789');
  });

  test('BDAT without a transaction discards the chunk and replies 503', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    assert.deepEqual(codes(await h.send('BDAT 4\r\nNOOPNOOP\r\n')), ['503 5.5.1', '250 2.0.0']);
  });

  test('BDAT over the size limit: 552 5.3.4, transaction reset, later chunks up to LAST discarded with 552', async () => {
    const h = new Harness({ options: { maxMessageSize: 10 } });
    await h.transaction();
    const out = await h.send('BDAT 8\r\n12345678BDAT 8\r\n12345678BDAT 2 LAST\r\nxxNOOP\r\n');
    assert.deepEqual(codes(out), ['250 2.0.0', '552 5.3.4', '552 5.3.4', '250 2.0.0']);
    assert.equal(h.accepted.length, 0);
    // After LAST a stray BDAT is out of sequence again.
    assert.deepEqual(codes(await h.send('BDAT 1\r\nx')), ['503 5.5.1']);
  });

  test('RFC 3030: 50 chunks pipelined after a refused one are each answered, none counted as an error; the next transaction works', async () => {
    const h = new Harness({ options: { maxMessageSize: 10 } });
    await h.transaction();
    const chunks = Array.from({ length: 50 }, (_, i) => `BDAT 4${i === 49 ? ' LAST' : ''}\r\nabcd`).join('');
    const out = await h.send(`BDAT 11\r\n01234567890${chunks}`);
    assert.deepEqual(codes(out), Array(51).fill('552 5.3.4'));
    assert.equal(h.io.closed, false);
    await h.transaction();
    assert.deepEqual(codes(await h.send('BDAT 3 LAST\r\nabc')), ['250 2.0.0']);
    assert.equal(Harness.body(h.accepted[0] as never), 'abc');
    // A refused MAIL and the chunks pipelined behind it: one 503 counted, the rest answered alike.
    const m = new Harness({ hooks: { checkSender: () => ({ code: 550, enhanced: '5.7.1', text: 'no' }) } });
    await m.send('EHLO c\r\n');
    const r = await m.send(`MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n${chunks}`);
    assert.deepEqual(codes(r), ['550 5.7.1', '503 5.5.1', ...Array(50).fill('503 5.5.1')]);
    assert.equal(m.io.closed, false);
  });

  test('after a refused chunk, empty chunks without LAST are junk: a loop of them is closed', async () => {
    const h = new Harness({ options: { maxMessageSize: 4, maxJunkCommands: 5, maxBadCommands: 3 } });
    await h.transaction();
    const out = await h.send(`BDAT 5\r\n12345${'BDAT 0\r\n'.repeat(20)}`);
    assert.deepEqual(codes(out).slice(0, 9), Array(9).fill('552 5.3.4'));
    assert.match(out, /421 4\.7\.0 .*too many commands without mail\r\n$/);
    assert.equal(h.io.closed, true);
  });

  test('a DATA-stage hook that fails at the first BDAT: its chunk is read to its end, not taken for commands', async () => {
    const h = new Harness({ hooks: { checkData: () => Promise.reject(new Error('filter down')) } });
    await h.transaction();
    const out = await h.send('BDAT 12\r\nQUIT\r\nQUIT\r\nBDAT 2 LAST\r\nxxNOOP\r\n');
    assert.deepEqual(codes(out), ['451 4.3.0', '451 4.3.0', '250 2.0.0']);
    assert.equal(h.io.closed, false);
  });

  test('DATA after BDAT and BINARYMIME with DATA are out of sequence', async () => {
    const h = new Harness({ options: { binaryMime: true } });
    await h.transaction();
    assert.deepEqual(codes(await h.send('BDAT 1\r\nxDATA\r\n')), ['250 2.0.0', '503 5.5.1']);
    await h.send('RSET\r\nMAIL FROM:<a@b.c> BODY=BINARYMIME\r\nRCPT TO:<d@e.f>\r\n');
    assert.deepEqual(codes(await h.send('DATA\r\n')), ['503 5.5.1']);
    const out = await h.send('BDAT 4 LAST\r\na\r\0b');
    assert.deepEqual(codes(out), ['250 2.0.0']);
    assert.equal(h.accepted[0]?.params.body, 'BINARYMIME');
  });

  test('a bad BDAT size is a syntax error', async () => {
    const h = new Harness();
    await h.transaction();
    assert.deepEqual(codes(await h.send('BDAT x\r\nBDAT -1\r\n')), ['501 5.5.4', '501 5.5.4']);
  });
});

describe('session: timeouts, STARTTLS, ETRN, shutdown, detach', () => {
  test('idle timeout: 421 4.4.2 and close', async () => {
    const h = new Harness({ options: { idleTimeoutMs: 300_000 } });
    h.clock.advance(299_000);
    h.session.checkIdle(h.clock.now());
    assert.equal(h.io.closed, false);
    await h.send('NOOP\r\n');
    h.clock.advance(299_000);
    h.session.checkIdle(h.clock.now());
    assert.equal(h.io.closed, false);
    h.clock.advance(2_000);
    h.session.checkIdle(h.clock.now());
    assert.deepEqual(codes(h.output()), ['421 4.4.2']);
    assert.equal(h.io.closed, true);
  });

  test('STARTTLS drops pipelined plaintext and resets the session after the handshake', async () => {
    const h = new Harness({ tls: true });
    await h.send('EHLO c\r\n');
    const out = await h.send('STARTTLS\r\nMAIL FROM:<inject@x.y>\r\n');
    assert.deepEqual(codes(out), ['220 2.0.0']);
    assert.equal(h.io.tlsRequested, 1);
    assert.equal(h.session.droppedAfterStartTls, 'MAIL FROM:<inject@x.y>\r\n'.length);
    await h.send('MORE PLAINTEXT\r\n');
    assert.equal(h.output(), '');
    h.session.tlsStarted({ protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' });
    assert.deepEqual(codes(await h.send('MAIL FROM:<a@b.c>\r\n')), ['503 5.5.1']);
    const ehlo = await h.send('EHLO c\r\n');
    assert.doesNotMatch(ehlo, /STARTTLS/);
    assert.deepEqual(codes(await h.send('STARTTLS\r\n')), ['503 5.5.1']);
  });

  test('STARTTLS without TLS configured is not implemented', async () => {
    const h = new Harness();
    assert.deepEqual(codes(await h.send('EHLO c\r\nSTARTTLS\r\n')), ['250', '502 5.5.1']);
  });

  test('ETRN answers from the hook, needs HELO and is refused in a transaction', async () => {
    const seen: string[] = [];
    const h = new Harness({
      hooks: {
        etrn: (node) => {
          seen.push(node);
          return { code: 251, text: `OK, no messages waiting for node ${node}` };
        },
      },
    });
    assert.deepEqual(codes(await h.send('ETRN example.com\r\n')), ['503 5.5.1']);
    await h.send('EHLO c\r\n');
    assert.deepEqual(codes(await h.send('ETRN @example.com\r\nETRN\r\nETRN a b\r\n')), [
      '251',
      '501 5.5.4',
      '501 5.5.4',
    ]);
    await h.send('MAIL FROM:<a@b.c>\r\n');
    assert.deepEqual(codes(await h.send('ETRN #q\r\n')), ['503 5.5.1']);
    assert.deepEqual(seen, ['@example.com']);
  });

  test('shutdown closes an idle session at once with 421 4.3.2', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    h.session.shutdown();
    assert.deepEqual(codes(h.output()), ['421 4.3.2']);
    assert.equal(h.io.closed, true);
  });

  test('shutdown lets the current transaction finish first', async () => {
    const h = new Harness();
    await h.transaction();
    await h.send('DATA\r\nsome');
    h.session.shutdown();
    assert.equal(h.io.closed, false);
    const out = await h.send(' data\r\n.\r\n');
    assert.deepEqual(codes(out), ['250 2.0.0', '421 4.3.2']);
    assert.equal(h.io.closed, true);
    assert.equal(h.accepted.length, 1);
  });

  test('detach stops the server role and returns the unconsumed input', async () => {
    const h = new Harness();
    await h.send('EHLO c\r\n');
    h.session.feed(Buffer.from('NOOP\r\n'));
    h.output();
    h.io.writable = true;
    const pending = h.session.detach();
    assert.equal(pending.length, 0);
    h.session.feed(Buffer.from('NOOP\r\n'));
    assert.equal(h.output(), '');
    assert.equal(h.io.closed, false);
  });
});

/** A sink that records what it gets and pauses the session on demand. */
class TestSink {
  chunks: Buffer[] = [];
  size = 0;
  aborted = 0;
  /** write() returns false while set; release() resolves drained(). */
  full = false;
  private waiters: Array<() => void> = [];
  write(b: Buffer): boolean {
    this.chunks.push(b);
    this.size += b.length;
    return !this.full;
  }
  drained(): Promise<void> {
    return this.full ? new Promise((r) => this.waiters.push(r)) : Promise.resolve();
  }
  release(): void {
    this.full = false;
    for (const w of this.waiters.splice(0)) w();
  }
  async *read(): AsyncGenerator<Buffer> {
    yield* this.chunks;
  }
  abort(): void {
    this.aborted++;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }
}

describe('session: message data sinks', () => {
  function withSinks(hooks: Partial<ServerHooks> = {}) {
    const sinks: TestSink[] = [];
    const h = new Harness({
      hooks: {
        openData: () => {
          const s = new TestSink();
          sinks.push(s);
          return s;
        },
        ...hooks,
      },
    });
    return { h, sinks };
  }

  test('data goes to the sink as it arrives, our Received: header first', async () => {
    const { h, sinks } = withSinks();
    await h.transaction();
    assert.deepEqual(codes(await h.send('DATA\r\n')), ['354']);
    assert.match(sinks[0]!.text(), /^Received: from client\.example/);
    await h.send('Subject: x\r\n\r\nline one\r\n');
    assert.match(sinks[0]!.text(), /line one\r\n$/, 'written before the end of data');
    assert.deepEqual(codes(await h.send('.\r\n')), ['250 2.0.0']);
    assert.equal(h.accepted[0]!.data, sinks[0]);
    assert.equal(h.accepted[0]!.size, sinks[0]!.size);
    assert.equal(sinks[0]!.aborted, 0);
  });

  test('while the sink asks for a pause the session reads nothing more, then goes on in order', async () => {
    const { h, sinks } = withSinks();
    await h.transaction();
    await h.send('DATA\r\n');
    sinks[0]!.full = true;
    const part = `${'x'.repeat(998)}\r\n`.repeat(100);
    assert.equal(await h.send(part), '');
    const taken = sinks[0]!.size;
    // More data, the end and a pipelined NOOP: buffered, not processed while the sink is full.
    const out = await h.send(`${part}${part}.\r\nNOOP\r\n`);
    assert.equal(out, '', 'no reply while paused');
    assert.equal(sinks[0]!.size, taken, 'nothing more was taken');
    assert.equal(h.io.reading, false, 'the transport is asked to stop reading');
    sinks[0]!.release();
    for (let i = 0; i < 5; i++) await tick();
    assert.deepEqual(codes(h.output()), ['250 2.0.0', '250 2.0.0']);
    const body = part.repeat(3);
    assert.ok(sinks[0]!.text().endsWith(body));
  });

  test('the sink is aborted when the client goes away mid-data, on RSET mid-BDAT, and after a body error', async () => {
    const a = withSinks();
    await a.h.transaction();
    await a.h.send('DATA\r\nSubject: x\r\n\r\npartial');
    a.h.session.onClose();
    assert.equal(a.sinks[0]!.aborted, 1);
    assert.equal(a.h.accepted.length, 0);

    const b = withSinks();
    await b.h.transaction();
    assert.deepEqual(codes(await b.h.send('BDAT 5\r\nhello')), ['250 2.0.0']);
    assert.deepEqual(codes(await b.h.send('RSET\r\n')), ['250 2.0.0']);
    assert.equal(b.sinks[0]!.aborted, 1);

    const c = withSinks();
    await c.h.transaction();
    await c.h.send('DATA\r\nbad\0line\r\n');
    assert.equal(c.sinks[0]!.aborted, 1, 'dropped as soon as the message cannot be accepted');
    assert.deepEqual(codes(await c.h.send('more\r\n.\r\n')), ['550 5.6.0']);
    assert.equal(c.h.accepted.length, 0);
  });

  test('a rejected accept aborts the sink', async () => {
    const { h, sinks } = withSinks({
      accept: async () => {
        throw new MtaError('X', 'transient', 'disk trouble', { smtp: { code: 452, enhanced: '4.3.1' } });
      },
    });
    await h.transaction();
    assert.deepEqual(codes(await h.send('DATA\r\nhi\r\n.\r\n')), ['354', '452 4.3.1']);
    assert.equal(sinks[0]!.aborted, 1);
  });

  test('admitTransaction refuses MAIL with its reply; a later MAIL is admitted once it says so', async () => {
    let busy = true;
    const h = new Harness({
      hooks: {
        admitTransaction: () =>
          busy ? { code: 452, enhanced: '4.3.1', text: 'Insufficient system storage' } : null,
      },
    });
    await h.send('EHLO c\r\n');
    assert.deepEqual(codes(await h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n')), [
      '452 4.3.1',
      '503 5.5.1',
    ]);
    busy = false;
    assert.deepEqual(codes(await h.send('MAIL FROM:<a@b.c>\r\n')), ['250 2.1.0']);
  });

  test('an openData hook that throws gets 451 at DATA and the session goes on', async () => {
    const h = new Harness({
      hooks: {
        openData: () => {
          throw new Error('no queue');
        },
      },
    });
    await h.transaction();
    assert.deepEqual(codes(await h.send('DATA\r\n')), ['451 4.3.0']);
    assert.deepEqual(codes(await h.send('NOOP\r\n')), ['250 2.0.0']);
  });
});
