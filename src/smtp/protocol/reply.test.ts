import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatReply } from './reply.js';

describe('formatReply', () => {
  test('a single-line reply with an enhanced code', () => {
    assert.equal(formatReply({ code: 250, enhanced: '2.0.0', text: 'Ok' }), '250 2.0.0 Ok\r\n');
  });
  test('a reply without an enhanced code', () => {
    assert.equal(formatReply({ code: 354, text: 'Go ahead' }), '354 Go ahead\r\n');
  });
  test('multi-line replies use a dash on every line but the last, enhanced code on each', () => {
    assert.equal(
      formatReply({ code: 550, enhanced: '5.7.1', text: ['a', 'b', 'c'] }),
      '550-5.7.1 a\r\n550-5.7.1 b\r\n550 5.7.1 c\r\n',
    );
  });
  test('embedded CR/LF in text cannot inject a second reply', () => {
    assert.equal(formatReply({ code: 250, text: 'x\r\n250 y' }), '250 x 250 y\r\n');
  });
  test('no reply line exceeds 512 octets with its CRLF (RFC 5321 4.5.3.1.5): long text is cut', () => {
    const long = formatReply({ code: 250, text: ['mx.test Hello ' + 'h'.repeat(600), 'PIPELINING'] });
    const [first = '', second] = long.split('\r\n');
    assert.equal(Buffer.byteLength(first) + 2, 512);
    assert.ok(first.startsWith('250-mx.test Hello hhh'));
    assert.equal(second, '250 PIPELINING');
    // Cut on a character boundary: no half UTF-8 sequence reaches the wire.
    const utf8 = formatReply({ code: 550, enhanced: '5.1.1', text: 'ü'.repeat(400) });
    assert.ok(Buffer.byteLength(utf8) <= 512);
    assert.doesNotMatch(utf8, /\uFFFD/);
    assert.match(utf8, /^550 5\.1\.1 ü+\r\n$/);
    const exact = `250 ${'x'.repeat(506)}\r\n`;
    assert.equal(formatReply({ code: 250, text: 'x'.repeat(506) }), exact);
  });
  test('an out-of-range code throws', () => {
    assert.throws(() => formatReply({ code: 99, text: 'x' }), TypeError);
  });
});
