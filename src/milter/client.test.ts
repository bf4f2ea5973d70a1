import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseReplyCode } from './client.js';

describe('milter reply codes (SMFIR_REPLYCODE)', () => {
  test('a one-line reply with an enhanced code', () => {
    assert.deepEqual(parseReplyCode('554 5.7.1 Spam message rejected'), {
      code: 554,
      enhanced: '5.7.1',
      text: 'Spam message rejected',
    });
  });

  test('a multi-line reply keeps its lines; "%%" is a literal percent', () => {
    assert.deepEqual(parseReplyCode('451-4.7.1 first\r\n451 4.7.1 100%% sure'), {
      code: 451,
      enhanced: '4.7.1',
      text: ['first', '100% sure'],
    });
  });

  test('without an enhanced code the text is kept whole', () => {
    assert.deepEqual(parseReplyCode('550 go away'), { code: 550, text: ['go away'] });
  });

  test('anything but a 4xx/5xx reply with consistent lines is refused', () => {
    for (const bad of [
      '250 2.0.0 ok',
      '55 short',
      '550-5.7.1 no last line',
      '550-5.7.1 a\r\n451 4.7.1 b',
      '550 4.7.1 class mismatch',
      'hello',
      '',
    ])
      assert.equal(parseReplyCode(bad), null, JSON.stringify(bad));
  });
});
