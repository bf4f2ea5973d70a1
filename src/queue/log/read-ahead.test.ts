// Recovery's read-ahead: how far it reads ahead of the scan (files and bytes), that each file is
// read once, and that a failed read ahead surfaces only when its file is asked for.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ReadAhead } from './read-ahead.js';

/** A reader that records each read and lets the test settle it. */
function reads() {
  const started: string[] = [];
  const pending = new Map<string, { resolve: (b: Buffer) => void; reject: (e: Error) => void }>();
  const read = (path: string): Promise<Buffer> => {
    started.push(path);
    return new Promise<Buffer>((resolve, reject) => pending.set(path, { resolve, reject }));
  };
  return { started, pending, read };
}

describe('recovery read-ahead', () => {
  test('reads one file ahead by default, whatever the sizes', () => {
    const r = reads();
    const ra = new ReadAhead(['a', 'b', 'c'], r.read);
    void ra.get('a');
    assert.deepEqual(r.started, ['a', 'b']);
    void ra.get('b');
    assert.deepEqual(r.started, ['a', 'b', 'c']);
    void ra.get('c');
    assert.deepEqual(r.started, ['a', 'b', 'c'], 'nothing is read twice, nothing past the end');
  });

  test('reads several small files ahead, up to the file and byte limits', () => {
    const r = reads();
    const order = ['f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6'];
    const sizes = new Map(order.map((p) => [p, 100] as [string, number]));
    const ra = new ReadAhead(order, r.read, { maxFiles: 4, maxBytes: 250, sizes });
    void ra.get('f0');
    // The next file always; then more while the bytes beyond it stay within 250.
    assert.deepEqual(r.started, ['f0', 'f1', 'f2', 'f3']);
    void ra.get('f1');
    assert.deepEqual(r.started, ['f0', 'f1', 'f2', 'f3', 'f4']);
  });

  test('beyond the next file, only what fits in the bytes is read ahead: never a second large one', () => {
    const r = reads();
    const sizes = new Map([
      ['first', 10],
      ['big1', 1_000_000],
      ['small', 10],
      ['big2', 1_000_000],
      ['last', 10],
    ]);
    const ra = new ReadAhead(['first', 'big1', 'small', 'big2', 'last'], r.read, {
      maxFiles: 8,
      maxBytes: 100,
      sizes,
    });
    void ra.get('first');
    assert.deepEqual(r.started, ['first', 'big1', 'small']);
    void ra.get('big1');
    assert.deepEqual(r.started, ['first', 'big1', 'small'], 'big2 waits until it is the next file');
    void ra.get('small');
    assert.deepEqual(r.started, ['first', 'big1', 'small', 'big2', 'last']);
  });

  test('the buffer read ahead is the one handed out', async () => {
    const r = reads();
    const ra = new ReadAhead(['a', 'b'], r.read);
    const a = ra.get('a');
    r.pending.get('a')!.resolve(Buffer.from('A'));
    r.pending.get('b')!.resolve(Buffer.from('B'));
    assert.equal((await a).toString(), 'A');
    assert.equal((await ra.get('b')).toString(), 'B');
    assert.deepEqual(r.started, ['a', 'b']);
  });

  test('a failed read ahead rejects only the get of its own file', async () => {
    const r = reads();
    const ra = new ReadAhead(['a', 'b', 'c'], r.read, { maxFiles: 2, maxBytes: 1 << 20 });
    const a = ra.get('a');
    r.pending.get('b')!.reject(Object.assign(new Error('EIO'), { code: 'EIO' }));
    r.pending.get('a')!.resolve(Buffer.from('A'));
    assert.equal((await a).toString(), 'A');
    // Let the rejection settle: it must not be an unhandled one.
    await new Promise((res) => setImmediate(res));
    await assert.rejects(ra.get('b'), /EIO/);
  });

  test('a file asked for again after it was handed out is read again', () => {
    const r = reads();
    const ra = new ReadAhead(['a', 'b'], r.read);
    void ra.get('a');
    void ra.get('a');
    assert.deepEqual(r.started, ['a', 'b', 'a']);
  });

  test("a lane's newest segment read first leaves its older ones to be read ahead", () => {
    // laneSegments asks for the newest segment of a lane before the others (to learn which
    // segments may end torn): the older ones must still be read ahead, not skipped.
    const r = reads();
    const order = ['l/1', 'l/2', 'l/3', 'm/1'];
    const sizes = new Map(order.map((p) => [p, 100] as [string, number]));
    const ra = new ReadAhead(order, r.read, { maxFiles: 2, maxBytes: 1000, sizes });
    void ra.get('l/3');
    assert.deepEqual(r.started, ['l/3', 'l/1', 'l/2']);
    void ra.get('l/1');
    assert.deepEqual(r.started, ['l/3', 'l/1', 'l/2', 'm/1'], 'l/3 is not read again');
    void ra.get('l/2');
    void ra.get('m/1');
    assert.deepEqual(r.started, ['l/3', 'l/1', 'l/2', 'm/1']);
  });
});
