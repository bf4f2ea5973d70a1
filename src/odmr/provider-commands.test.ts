import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DeliveryJob } from '../queue/types.js';
import { groupByMessage } from './atrn-delivery.js';
import { parseAtrnArgs } from './provider-commands.js';

test('ATRN arguments: none means all, commas without spaces, lower-cased and deduplicated', () => {
  assert.deepEqual(parseAtrnArgs(''), []);
  assert.deepEqual(parseAtrnArgs('Acme.Example,acme-corp.example.,acme.example'), [
    'acme.example',
    'acme-corp.example',
  ]);
  assert.equal(parseAtrnArgs('a.example, b.example'), null);
  assert.equal(parseAtrnArgs('a.example,,b.example'), null);
  assert.equal(parseAtrnArgs('a..example'), null);
});

test('pieces of one message are grouped, in order of first appearance', () => {
  const job = (msgId: number, piece: number) => ({ msgId, piece }) as unknown as DeliveryJob;
  const groups = groupByMessage([job(7, 0), job(3, 0), job(7, 1), job(9, 0)]);
  assert.deepEqual(
    groups.map((g) => g.map((j) => `${j.msgId}.${j.piece}`)),
    [['7.0', '7.1'], ['3.0'], ['9.0']],
  );
});
