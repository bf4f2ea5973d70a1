import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ReplyParser, ReplyProtocolError, splitEnhanced } from './reply.js';
import { describeReply } from '../protocol/reply.js';

const b = (s: string) => Buffer.from(s, 'latin1');

describe('ReplyParser', () => {
  test('parses a single-line reply with an enhanced status code', () => {
    const [r, ...rest] = new ReplyParser().feed(b('550 5.1.1 <x@y>: user unknown\r\n'));
    assert.equal(rest.length, 0);
    assert.equal(r?.code, 550);
    assert.equal(r?.enhanced, '5.1.1');
    assert.equal(r?.text, '<x@y>: user unknown');
    assert.equal(describeReply(r!), '550 5.1.1 <x@y>: user unknown');
  });

  test('assembles a multi-line reply fed one byte at a time', () => {
    const p = new ReplyParser();
    const input = '250-mx.example\r\n250-PIPELINING\r\n250 SIZE 1000\r\n';
    const out = [];
    for (const ch of input) out.push(...p.feed(b(ch)));
    assert.equal(out.length, 1);
    assert.deepEqual(out[0]?.lines, ['mx.example', 'PIPELINING', 'SIZE 1000']);
    assert.equal(p.pending, false);
  });

  test('returns several pipelined replies from one read, in order', () => {
    const out = new ReplyParser().feed(b('250 2.1.0 ok\r\n550 5.1.1 no\r\n354 go\r\n'));
    assert.deepEqual(
      out.map((r) => r.code),
      [250, 550, 354],
    );
  });

  test('accepts a bare code line and a bare LF line end', () => {
    const out = new ReplyParser().feed(b('250\n221 bye\n'));
    assert.deepEqual(
      out.map((r) => [r.code, r.text]),
      [
        [250, ''],
        [221, 'bye'],
      ],
    );
  });

  test('ignores an enhanced code of a different class than the reply', () => {
    assert.deepEqual(splitEnhanced(250, '5.1.1 odd'), { enhanced: undefined, rest: '5.1.1 odd' });
    assert.equal(new ReplyParser().feed(b('451 2.0.0 odd\r\n'))[0]?.enhanced, undefined);
  });

  test('strips the enhanced code from every line of the diagnostic text', () => {
    const [r] = new ReplyParser().feed(b('550-5.7.1 first\r\n550 5.7.1 second\r\n'));
    assert.equal(r?.text, 'first second');
  });

  for (const bad of ['abc hello\r\n', '25\r\n', '199 low\r\n', '600 high\r\n', '250_x\r\n']) {
    test(`rejects the malformed line ${JSON.stringify(bad)}`, () => {
      assert.throws(() => new ReplyParser().feed(b(bad)), ReplyProtocolError);
    });
  }

  test('rejects a multi-line reply whose code changes', () => {
    assert.throws(() => new ReplyParser().feed(b('250-a\r\n251 b\r\n')), /code changed/);
  });

  test('rejects a line longer than the limit even before its LF arrives', () => {
    const p = new ReplyParser({ maxLineLength: 100 });
    p.feed(b('250 ' + 'x'.repeat(50)));
    assert.throws(() => p.feed(b('x'.repeat(50))), /too long/);
  });

  test('rejects a reply with too many lines or too many bytes', () => {
    assert.throws(() => new ReplyParser({ maxLines: 3 }).feed(b('250-a\r\n'.repeat(4))), /too many lines/);
    assert.throws(
      () => new ReplyParser({ maxReplyBytes: 100 }).feed(b(`250-${'z'.repeat(40)}\r\n`.repeat(3))),
      /too large/,
    );
  });

  test('stays dead after a protocol error', () => {
    const p = new ReplyParser();
    assert.throws(() => p.feed(b('xyz\r\n')));
    assert.throws(() => p.feed(b('250 ok\r\n')), ReplyProtocolError);
  });
});
