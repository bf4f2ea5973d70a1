// IdSource across threads: ids given by a worker thread's source over the same shared cell and by
// the main thread's at the same time are all distinct and each thread's rise; the memory budget
// over a shared buffer is one figure for both threads.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { MemoryBudget } from './data/budget.js';
import { IdSource } from './ids.js';

const here = new URL('.', import.meta.url).href;

/** Runs `body` (an async function body with `buf` and the imported modules) in a worker thread. */
function inWorker<T>(buf: SharedArrayBuffer, body: string): Promise<T> {
  const src = `
    import { workerData, parentPort } from 'node:worker_threads';
    const { IdSource } = await import(${JSON.stringify(`${here}ids.js`)});
    const { MemoryBudget } = await import(${JSON.stringify(`${here}data/budget.js`)});
    const buf = workerData;
    parentPort.postMessage(await (async () => { ${body} })());`;
  return new Promise<T>((res, rej) => {
    const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(src)}`), { workerData: buf });
    w.once('message', res);
    w.once('error', rej);
  });
}

describe('IdSource shared between threads', () => {
  test('no id is given twice, each thread’s ids rise', async () => {
    const ids = IdSource.shared();
    const n = 200_000;
    const theirs = inWorker<number[]>(
      ids.buffer!,
      `const s = new IdSource(Date.now, buf); const out = []; for (let i = 0; i < ${n}; i++) out.push(s.next()); return out;`,
    );
    const mine: number[] = [];
    for (let i = 0; i < n; i++) mine.push(ids.next());
    const other = await theirs;
    for (const list of [mine, other]) for (let i = 1; i < list.length; i++) assert.ok(list[i]! > list[i - 1]!);
    assert.equal(new Set([...mine, ...other]).size, 2 * n);
  });

  test('an id observed in one thread bounds the other’s next', async () => {
    const ids = IdSource.shared(() => 1000);
    ids.observe(5_000_000);
    const next = await inWorker<number>(ids.buffer!, 'return new IdSource(() => 1000, buf).next();');
    assert.equal(next, 5_000_001);
  });

  test('a source of one thread is unchanged', () => {
    const s = new IdSource(() => 1);
    assert.deepEqual([s.next(), s.next()], [1024, 1025]);
    assert.equal(s.buffer, undefined);
  });
});

describe('MemoryBudget shared between threads', () => {
  test('bytes added by the other thread count here, and back to zero, never below', async () => {
    const b = MemoryBudget.shared(1000);
    b.add(600);
    assert.equal(b.over, false);
    const seen = await inWorker<{ used: number; over: boolean }>(
      b.buffer!,
      'const t = new MemoryBudget(1000, buf); t.add(500); return { used: t.used, over: t.over };',
    );
    assert.deepEqual(seen, { used: 1100, over: true });
    assert.equal(b.over, true);
    b.sub(600);
    await inWorker(b.buffer!, 'const t = new MemoryBudget(1000, buf); t.sub(700); return 0;');
    assert.equal(b.used, 0);
  });
});
