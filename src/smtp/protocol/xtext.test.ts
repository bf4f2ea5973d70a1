import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { decodeXtext, encodeXtext } from './xtext.js';

describe('xtext', () => {
  test('plus-escapes decode to their bytes', () => {
    assert.equal(decodeXtext('a+2Bb+3Dc'), 'a+b=c');
    assert.equal(decodeXtext('rfc822;user+40example.com'), 'rfc822;user@example.com');
    assert.equal(decodeXtext('user+40example.com'), 'user@example.com');
  });
  test('malformed escapes, lowercase hex, spaces and "=" are rejected', () => {
    for (const s of ['a+2', 'a+zz', 'a+2b', 'a b', 'a=b', 'é']) assert.equal(decodeXtext(s), null, s);
  });
  test('encoding escapes +, =, space, controls and non-ASCII', () => {
    assert.equal(encodeXtext('a+b=c d'), 'a+2Bb+3Dc+20d');
    assert.equal(encodeXtext('é'), '+C3+A9');
  });
  test('decode(encode(s)) round-trips any string', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme' }), (s) => decodeXtext(encodeXtext(s)) === s));
  });
});
