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
  test('an out-of-range code throws', () => {
    assert.throws(() => formatReply({ code: 99, text: 'x' }), TypeError);
  });
});
