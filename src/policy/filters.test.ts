import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ServerHooks, SessionContext } from '../smtp/server/hooks.js';
import { withFilters } from './filters.js';

const ctx = { client: { ip: '192.0.2.1', port: 1 } } as unknown as SessionContext;
const base: ServerHooks = {
  newMessageId: () => 'X',
  accept: async () => ({ queueId: 'X' }),
  checkRecipient: (a) =>
    a.endsWith('@own.example') ? null : { code: 554, enhanced: '5.7.1', text: 'relay' },
};

describe('session filters', () => {
  test('without filters the hooks are returned untouched', () => {
    assert.equal(withFilters(base, []), base);
  });

  test('our recipient check runs first; a filter only sees what we accept', async () => {
    const seen: string[] = [];
    const h = withFilters(base, [
      {
        checkRecipient: (a) => {
          seen.push(a);
          return Promise.resolve(
            a.startsWith('bad') ? { code: 550, enhanced: '5.7.1', text: 'milter' } : null,
          );
        },
      },
    ]);
    assert.equal((await h.checkRecipient?.('x@relay.example', ctx))?.text, 'relay');
    assert.equal((await h.checkRecipient?.('bad@own.example', ctx))?.text, 'milter');
    assert.equal(await h.checkRecipient?.('ok@own.example', ctx), null);
    assert.deepEqual(seen, ['bad@own.example', 'ok@own.example']);
  });

  test('the first refusal wins and later filters do not see the event', async () => {
    const calls: string[] = [];
    const h = withFilters(base, [
      {
        connect: () => {
          calls.push('one');
          return { code: 451, enhanced: '4.7.1', text: 'one' };
        },
      },
      {
        connect: () => {
          calls.push('two');
          return null;
        },
      },
    ]);
    assert.equal((await h.connect?.(ctx))?.text, 'one');
    assert.deepEqual(calls, ['one']);
  });

  test('synchronous checks stay synchronous; abort and disconnect reach every filter', () => {
    const calls: string[] = [];
    const h = withFilters(base, [
      { checkHelo: () => null, abort: () => void calls.push('a1'), disconnect: () => void calls.push('d1') },
      { checkHelo: () => null, abort: () => void calls.push('a2'), disconnect: () => void calls.push('d2') },
    ]);
    assert.equal(h.checkHelo?.('c', ctx), null);
    h.abort?.(ctx);
    h.disconnect?.(ctx);
    assert.deepEqual(calls, ['a1', 'a2', 'd1', 'd2']);
  });
});
