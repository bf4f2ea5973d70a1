// secretEquals: equal secrets match, any difference (length, last byte, Unicode) does not.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { secretEquals } from './secret-equal.js';

test('secretEquals matches equal secrets and nothing else, whatever the lengths', () => {
  assert.equal(secretEquals('Tr0ub4dor&3', 'Tr0ub4dor&3'), true);
  assert.equal(secretEquals('', ''), true);
  assert.equal(secretEquals('pässwörd', 'pässwörd'), true);
  for (const other of ['Tr0ub4dor&4', 'Tr0ub4dor&', 'Tr0ub4dor&33', '', 'tr0ub4dor&3'])
    assert.equal(secretEquals('Tr0ub4dor&3', other), false, other);
  // A string whose UTF-16 units equal another's once truncated to 8 bits is still different.
  assert.equal(secretEquals('\u0141', 'A'), false);
});
