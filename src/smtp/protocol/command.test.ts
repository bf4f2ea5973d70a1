import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseCommand } from './command.js';

describe('parseCommand', () => {
  test('verbs are case-insensitive and arguments keep their case', () => {
    assert.deepEqual(parseCommand('mail FROM:<A@b>'), { verb: 'MAIL', args: 'FROM:<A@b>' });
  });
  test('a verb alone has empty arguments', () => {
    assert.deepEqual(parseCommand('QUIT'), { verb: 'QUIT', args: '' });
  });
  test('trailing spaces are tolerated', () => {
    assert.deepEqual(parseCommand('EHLO x.example  '), { verb: 'EHLO', args: 'x.example' });
  });
  test('empty lines, leading spaces, control characters and non-letter verbs have no verb', () => {
    for (const l of ['', ' NOOP', 'NO\rOP', 'NOOP\x00', 'MA1L x', '\u00e9HLO x']) {
      assert.equal(parseCommand(l).verb, '', JSON.stringify(l));
    }
  });
});
