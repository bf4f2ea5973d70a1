// Message id text: formatId against the general form it replaces (Number#toString(16), upper case,
// padded to 13), for every id the queue can make and at the edges; parseId reads it back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { IdSource } from '../ids.js';
import { formatId, parseId } from './records.js';

const general = (id: number) => id.toString(16).toUpperCase().padStart(13, '0');

test('formatId writes every id below 2^52 as its 13 hex digits, and parseId reads it back', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (n) => {
      const id = n % 2 ** 52;
      assert.equal(formatId(id), general(id));
      assert.equal(parseId(formatId(id)), id);
    }),
    { numRuns: 20_000 },
  );
  for (const id of [0, 1, 15, 16, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 48, 2 ** 52 - 1])
    assert.equal(formatId(id), general(id), `id ${id}`);
});

test('ids from the queue id source format as before; what is no id below 2^52 takes the general path', () => {
  const ids = new IdSource(() => Date.now());
  for (let i = 0; i < 10_000; i++) {
    const id = ids.next();
    assert.equal(formatId(id), general(id));
  }
  for (const odd of [2 ** 52, 2 ** 53, -1, 1.5]) assert.equal(formatId(odd), general(odd), `value ${odd}`);
});
