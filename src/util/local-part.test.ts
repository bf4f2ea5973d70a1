import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { hasRoutingTricks, isDotString, isMailboxName } from './local-part.js';

describe('local parts', () => {
  test('a dot-string is atext atoms joined by single dots; non-ASCII only with SMTPUTF8', () => {
    for (const s of ['root', 'a.b', "o'brien", 'a+tag', 'x/y', 'a!b', '{}|~']) assert.ok(isDotString(s), s);
    for (const s of ['', '.a', 'a.', 'a..b', 'a b', 'a"b', 'a@b', 'a,b']) assert.ok(!isDotString(s), s);
    assert.ok(!isDotString('jörg'));
    assert.ok(isDotString('jörg', true));
  });

  test('a mailbox name is a dot-string without "/", "!" or "%", ASCII, at most 64 characters', () => {
    for (const s of ['alice', 'a.b', "o'brien", 'a+tag', 'a#b', 'x'.repeat(64)])
      assert.ok(isMailboxName(s), s);
    for (const s of [
      '../etc',
      'a/b',
      'evil.test!user',
      'a%b@c',
      '.a',
      'a.',
      'a..b',
      'jörg',
      'x'.repeat(65),
      '"q"',
    ])
      assert.ok(!isMailboxName(s), s);
  });

  test('routing tricks are %-hacks, bang paths and a second "@"', () => {
    for (const s of ['a%b', 'host!user', 'a@b']) assert.ok(hasRoutingTricks(s), s);
    assert.ok(!hasRoutingTricks('plain.user+tag'));
  });
});
