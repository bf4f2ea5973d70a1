// Tests of the index columns: the id → slot hash (IdIndex) against a Map, through the
// MessageTable that owns it, with random allocs and releases (collisions, wrap-around,
// backward-shift deletion, rehashing).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { IdIndex, MessageTable } from './tables.js';

function check(t: MessageTable, model: Map<number, number>): void {
  assert.equal(t.byId.size, model.size);
  for (const [id, s] of model) assert.equal(t.byId.get(id), s, `id ${id}`);
  assert.deepEqual(
    [...t.byId].sort((a, b) => a[0] - b[0]),
    [...model].sort((a, b) => a[0] - b[0]),
  );
}

describe('message id index', () => {
  test('finds every live id and none released, whatever the order of allocs and releases', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            // Ids as the queue makes them (52-bit), and small ones that collide after masking.
            fc.record({
              op: fc.constant('add' as const),
              id: fc.oneof(fc.integer({ min: 1, max: 2 ** 52 }), fc.integer({ min: 1, max: 3000 })),
            }),
            fc.record({ op: fc.constant('del' as const), pick: fc.nat() }),
            // slotFor: a new id gets a row, a known one its own row back.
            fc.record({
              op: fc.constant('slotFor' as const),
              id: fc.oneof(fc.integer({ min: 1, max: 2 ** 52 }), fc.integer({ min: 1, max: 3000 })),
            }),
            fc.record({ op: fc.constant('reserve' as const), n: fc.nat({ max: 5000 }) }),
          ),
          { maxLength: 3000 },
        ),
        (ops) => {
          const t = new MessageTable();
          const model = new Map<number, number>();
          for (const o of ops) {
            if (o.op === 'add') {
              if (model.has(o.id)) continue;
              model.set(o.id, t.alloc(o.id, 0));
            } else if (o.op === 'slotFor') {
              const s = t.slotFor(o.id, 0);
              if (model.has(o.id)) assert.equal(s, model.get(o.id));
              else model.set(o.id, s);
            } else if (o.op === 'reserve') {
              t.reserve(o.n);
              assert.ok(t.cap >= o.n);
            } else if (model.size > 0) {
              const ids = [...model.keys()];
              const id = ids[o.pick % ids.length]!;
              t.release(model.get(id)!);
              model.delete(id);
              assert.equal(t.byId.get(id), undefined);
            }
          }
          check(t, model);
        },
      ),
      { numRuns: 60 },
    );
  });

  test('deleting from a probe run that wraps past the last bucket keeps the rest findable', () => {
    // 1,024 buckets: ids whose home is the last bucket spill over into buckets 0, 1, ...; ids at
    // home 0 and 1 then sit behind them.
    const at = (home: number, n: number): number[] => {
      const out: number[] = [];
      for (let id = 1; out.length < n; id++) if ((IdIndex.hash(id) & 1023) === home) out.push(id);
      return out;
    };
    const ids = [...at(1022, 2), ...at(1023, 3), ...at(0, 2), ...at(1, 1)];
    for (let k = 0; k < ids.length; k++) {
      const t = new MessageTable();
      const model = new Map<number, number>();
      for (const id of ids) model.set(id, t.alloc(id, 0));
      const gone = ids[k]!;
      t.release(model.get(gone)!);
      model.delete(gone);
      assert.equal(t.byId.get(gone), undefined);
      check(t, model);
    }
  });

  test('a million ids: each found, absent ones not, at four bytes a bucket', () => {
    const t = new MessageTable();
    const base = 0x688c64f995400;
    for (let i = 0; i < 1_000_000; i++) t.alloc(base + i * 7, 0);
    for (let i = 0; i < 1_000_000; i += 997) assert.equal(t.byId.get(base + i * 7), i);
    assert.equal(t.byId.get(base + 1), undefined);
    assert.equal(t.byId.size, 1_000_000);
    assert.ok(t.byId.bytes() <= 4 * 4 * 1_000_000, `${t.byId.bytes()} bytes`);
    for (let i = 0; i < 1_000_000; i += 2) t.release(i);
    for (let i = 1; i < 1_000_000; i += 2 * 991) assert.equal(t.byId.get(base + i * 7), i);
    assert.equal(t.byId.get(base), undefined);
    assert.equal(t.byId.size, 500_000);
  });
});
