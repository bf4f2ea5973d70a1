// ThreadSink on its own, against a door that records what crosses: small data stays whole,
// big data crosses chunk by chunk in order with back-pressure, an abort after a chunk crossed
// drops the spool, a chunk the main thread refused fails the message, and read() returns it all.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type SpoolDoor, ThreadSink } from './thread-sink.js';

function door() {
  const crossed: Buffer[] = [];
  const dropped: number[] = [];
  const pending: Array<() => void> = [];
  let held = 0;
  let refuse: Error | undefined;
  const d: SpoolDoor & {
    crossed: Buffer[];
    dropped: number[];
    release(): void;
    held(): number;
    refuse(e: Error): void;
  } = {
    crossed,
    dropped,
    budget: { over: false, add: (n) => void (held += n), sub: (n) => void (held -= n) },
    chunk(_id, data) {
      crossed.push(Buffer.from(data));
      return new Promise((res, rej) => pending.push(() => (refuse ? rej(refuse) : res(undefined))));
    },
    // Reads back what crossed, a chunk per request (one reader per test).
    read: async () => crossed[readAt++],
    drop: (id) => void dropped.push(id),
    release: () => {
      for (const p of pending.splice(0)) p();
    },
    held: () => held,
    refuse: (e) => void (refuse = e),
  };
  let readAt = 0;
  return d;
}

const tick = () => new Promise((r) => setImmediate(r));

test('data under a chunk stays whole and is taken in one buffer', async () => {
  const d = door();
  const s = new ThreadSink(d, 7, 1000);
  assert.equal(s.write(Buffer.from('hello ')), true);
  assert.equal(s.write(Buffer.from('world')), true);
  const t = await s.take();
  assert.equal(Buffer.from(t.data).toString(), 'hello world');
  assert.equal(t.spooled, false);
  assert.equal(d.crossed.length, 0);
  assert.equal(d.held(), 0, 'the budget share is given up');
});

test('big data crosses in order, one chunk at a time, with back-pressure; the tail is taken', async () => {
  const d = door();
  const s = new ThreadSink(d, 7, 100);
  const all: Buffer[] = [];
  const w = (n: number, c: string) => {
    const b = Buffer.alloc(n, c);
    all.push(b);
    return s.write(b);
  };
  assert.equal(w(120, 'a'), true, 'the first chunk crosses; writing may go on');
  assert.equal(d.crossed.length, 1);
  assert.equal(w(110, 'b'), false, 'a second chunk full while the first crosses: wait');
  let drained = false;
  void s.drained().then(() => (drained = true));
  await tick();
  assert.equal(drained, false);
  d.release();
  await tick();
  await tick();
  assert.equal(drained, true);
  assert.equal(d.crossed.length, 2, 'the second chunk crossed once the first was written');
  w(30, 'c');
  const taking = s.take();
  await tick();
  d.release();
  const t = await taking;
  assert.equal(t.spooled, true);
  assert.deepEqual(Buffer.concat([...d.crossed, Buffer.from(t.data)]), Buffer.concat(all));
  assert.equal(d.held(), 0);
});

test('read() gives what crossed (read back) and what is still here, in order', async () => {
  const d = door();
  const s = new ThreadSink(d, 7, 100);
  s.write(Buffer.alloc(150, 'x'));
  d.release();
  await tick();
  s.write(Buffer.from('tail'));
  d.release();
  const got: Buffer[] = [];
  for await (const b of s.read()) got.push(b);
  assert.equal(Buffer.concat(got).toString(), `${'x'.repeat(150)}tail`);
});

test('an abort after a chunk crossed drops the spool; before any crossed, nothing to drop', async () => {
  const d = door();
  const a = new ThreadSink(d, 1, 100);
  a.write(Buffer.alloc(10));
  a.abort();
  const b = new ThreadSink(d, 2, 100);
  b.write(Buffer.alloc(200));
  b.abort();
  b.abort();
  assert.deepEqual(d.dropped, [2], 'once, for the message that streamed');
  d.release();
  await tick();
  assert.equal(d.held(), 0);
});

test('a chunk the main thread refused fails the message at take(); later bytes are dropped', async () => {
  const d = door();
  const s = new ThreadSink(d, 3, 100);
  s.write(Buffer.alloc(200));
  d.refuse(Object.assign(new Error('queue refusing'), { code: 'QUEUE_POISONED' }));
  d.release();
  await tick();
  assert.ok(s.failed);
  assert.equal(s.write(Buffer.alloc(500)), true, 'nothing more is kept');
  await assert.rejects(s.take(), /queue refusing/);
  assert.equal(d.held(), 0);
});
