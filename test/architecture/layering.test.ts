// The layering of src/, checked on the import graph (test/architecture/imports.ts):
//   1. queue/ (the durable core) imports only errors.ts, util/ and itself;
//   2. no file outside queue/ imports queue/state/, queue/core.ts or queue/log/ — the index, its
//      mutations and the segment files are the queue's own; the rest of the tree goes through
//      the facade. The files that still reach in are listed in REACHING_IN, an allow-list that
//      only shrinks: a new entry fails this test, and so does an entry that no longer occurs
//      (delete it when the facade replaces it);
//   3. nothing in src/ imports test/ or bench/ (a colocated *.test.ts may use test/support/);
//   4. no import cycles among src/'s run-time imports (type-only imports are erased).
// Rules 1, 2 and 4 are about what ships: colocated tests may reach anywhere.
// Fails: naming each offending import as "file:line -> target".

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cycles, type Edge, importsOf, sourceFiles } from './imports.js';

/**
 * Files outside queue/ that import queue/state, queue/core or queue/log today, with what they
 * import. The queue's facade and read model are to replace every one of these; then this list is
 * empty and stays so.
 */
const REACHING_IN: Record<string, readonly string[]> = {
  // `log verify` scans segments with recovery's reader and lane rules.
  'src/cli/log-verify.ts': [
    'src/queue/log/lane-scan.ts',
    'src/queue/log/reader.ts',
    'src/queue/log/segment.ts',
  ],
};

const isTest = (f: string): boolean => f.endsWith('.test.ts');
const inQueue = (f: string): boolean => f.startsWith('src/queue/');
const PRIVATE = /^src\/queue\/(state\/|core\.ts$|log\/)/;

const files = sourceFiles(['src', 'test', 'bench']);
const src = files.filter((f) => f.startsWith('src/'));
const shipped = src.filter((f) => !isTest(f));
const edges: Edge[] = src.flatMap(importsOf);
const shippedEdges = edges.filter((e) => !isTest(e.from));
const show = (e: Edge): string => `${e.from}:${e.line} -> ${e.to}`;

describe('layering of src/', () => {
  test('the import graph is read: every source file of src/ is seen, with its imports', () => {
    assert.ok(shipped.length > 100, `only ${shipped.length} files found`);
    assert.ok(
      edges.some((e) => e.from === 'src/daemon.ts' && e.to === 'src/queue/queues.ts'),
      'daemon.ts -> queue/queues.ts not seen',
    );
  });

  test('queue/ imports only errors.ts, util/ and itself', () => {
    const bad = shippedEdges.filter(
      (e) => inQueue(e.from) && !inQueue(e.to) && e.to !== 'src/errors.ts' && !e.to.startsWith('src/util/'),
    );
    assert.deepEqual(bad.map(show), []);
  });

  test('outside queue/, only the listed files reach into queue/state, queue/core or queue/log', () => {
    const found = new Map<string, Set<string>>();
    for (const e of shippedEdges) {
      if (inQueue(e.from) || !PRIVATE.test(e.to)) continue;
      const s = found.get(e.from) ?? new Set<string>();
      s.add(e.to);
      found.set(e.from, s);
    }
    const fresh: string[] = [];
    for (const [from, tos] of found)
      for (const to of tos) if (!REACHING_IN[from]?.includes(to)) fresh.push(`${from} -> ${to}`);
    assert.deepEqual(fresh, [], 'new imports of the queue internals: use the Queue facade');
    const gone: string[] = [];
    for (const [from, tos] of Object.entries(REACHING_IN))
      for (const to of tos) if (!found.get(from)?.has(to)) gone.push(`${from} -> ${to}`);
    assert.deepEqual(gone, [], 'these no longer reach in: delete them from REACHING_IN');
  });

  test('nothing in src/ imports test/ or bench/ (a colocated test may use test/support/)', () => {
    const bad = edges.filter(
      (e) =>
        e.to.startsWith('bench/') ||
        (e.to.startsWith('test/') && (!isTest(e.from) || !e.to.startsWith('test/support/'))),
    );
    assert.deepEqual(bad.map(show), []);
  });

  test('src/ has no import cycles', () => {
    assert.deepEqual(cycles(shippedEdges), []);
  });
});

describe('the layering checks themselves', () => {
  test('a cycle of run-time imports is found, a type-only one is not', () => {
    const e = (from: string, to: string, typeOnly = false): Edge => ({ from, to, typeOnly, line: 1 });
    assert.deepEqual(cycles([e('a', 'b'), e('b', 'c'), e('c', 'a'), e('c', 'd')]), [['a', 'b', 'c']]);
    assert.deepEqual(cycles([e('a', 'b'), e('b', 'a', true)]), []);
    assert.deepEqual(cycles([e('a', 'a')]), [['a']]);
  });

  test('type-only imports and dynamic imports are both recognised', () => {
    const own = importsOf('test/architecture/layering.test.ts');
    assert.ok(own.some((x) => x.to === 'test/architecture/imports.ts' && !x.typeOnly));
    const cli = edges.filter((x) => x.from === 'src/cli/main.ts');
    assert.ok(cli.length > 0, 'src/cli/main.ts has imports');
  });
});
