import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RouteTable } from './routes.js';

const h = (tag: string) => () => ({ body: tag });

describe('admin route table', () => {
  test('captures are decoded and literal segments win over captures', async () => {
    const t = new RouteTable();
    t.registerRoute('GET', '/api/queue/:id', h('one'));
    t.registerRoute('GET', '/api/queue/summary', h('summary'));
    const a = t.match('GET', '/api/queue/00A%20B');
    assert.deepEqual(a.found?.params, { id: '00A B' });
    assert.equal((await a.found!.handler({} as never)).body, 'one');
    assert.equal((await t.match('GET', '/api/queue/summary').found!.handler({} as never)).body, 'summary');
  });

  test('a path known for another method reports the allowed methods; unknown paths nothing', () => {
    const t = new RouteTable();
    t.registerRoute('POST', '/api/op/:op', h('op'));
    assert.deepEqual(t.match('GET', '/api/op/list'), { found: undefined, allowed: ['POST'] });
    assert.deepEqual(t.match('GET', '/nothing'), { found: undefined, allowed: [] });
  });

  test('HEAD is served by the GET route; public flag is kept', () => {
    const t = new RouteTable();
    t.registerRoute('GET', '/dashboard', h('page'), { public: true });
    assert.equal(t.match('HEAD', '/dashboard').found?.public, true);
    assert.equal(t.match('GET', '/dashboard/').found?.public, true);
  });

  test('registering the same route twice throws', () => {
    const t = new RouteTable();
    t.registerRoute('GET', '/a/:x', h('1'));
    assert.throws(() => t.registerRoute('GET', '/a/:y', h('2')), /already registered/);
    assert.throws(() => t.registerRoute('GET', 'a', h('3')), /must start/);
  });
});
