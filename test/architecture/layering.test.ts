// The layering of src/, checked on the import graph (test/architecture/imports.ts):
//   1. queue/ (the durable core) imports only errors.ts, util/ and itself;
//   2. outside queue/, the queue is used only through its public surface: src/queue/index.ts (the
//      facade, its read model and types) and queue/record/ (the pure codecs of the on-disk
//      format, which `log dump` decodes). The index (state/, core.ts), the log (log/), the
//      writer and the steps behind the facade are the queue's own;
//   3. nothing in src/ imports test/ or bench/ (a colocated *.test.ts may use test/support/);
//   4. no import cycles among src/'s run-time imports (type-only imports are erased).
// Rules 1, 2 and 4 are about what ships: colocated tests may reach anywhere.
// Fails: naming each offending import as "file:line -> target".

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cycles, type Edge, importsOf, sourceFiles } from './imports.js';

const isTest = (f: string): boolean => f.endsWith('.test.ts');
const inQueue = (f: string): boolean => f.startsWith('src/queue/');
const PUBLIC = /^src\/queue\/(index\.ts$|record\/)/;
/** Imports from outside queue/ of anything of the queue but its public surface. */
const reachingIn = (es: readonly Edge[]): Edge[] =>
  es.filter((e) => !inQueue(e.from) && inQueue(e.to) && !PUBLIC.test(e.to));

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
      edges.some((e) => e.from === 'src/daemon.ts' && e.to === 'src/queue/index.ts'),
      'daemon.ts -> queue/index.ts not seen',
    );
  });

  test('queue/ imports only errors.ts, util/ and itself', () => {
    const bad = shippedEdges.filter(
      (e) => inQueue(e.from) && !inQueue(e.to) && e.to !== 'src/errors.ts' && !e.to.startsWith('src/util/'),
    );
    assert.deepEqual(bad.map(show), []);
  });

  test('outside queue/, the queue is imported only through index.ts (and the codecs of record/)', () => {
    const bad = reachingIn(shippedEdges);
    assert.deepEqual(bad.map(show), [], 'imports of the queue internals: use src/queue/index.ts');
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

  test('an import of the queue internals from outside queue/ is found; index.ts and record/ are not', () => {
    const e = (from: string, to: string): Edge => ({ from, to, typeOnly: true, line: 1 });
    assert.deepEqual(
      reachingIn([
        e('src/admin/ops.ts', 'src/queue/state/tables.ts'),
        e('src/cli/x.ts', 'src/queue/queue.ts'),
        e('src/admin/ops.ts', 'src/queue/index.ts'),
        e('src/cli/log-dump.ts', 'src/queue/record/frame.ts'),
        e('src/queue/queues.ts', 'src/queue/core.ts'),
      ]).map(show),
      ['src/admin/ops.ts:1 -> src/queue/state/tables.ts', 'src/cli/x.ts:1 -> src/queue/queue.ts'],
    );
  });

  test('type-only imports and dynamic imports are both recognised', () => {
    const own = importsOf('test/architecture/layering.test.ts');
    assert.ok(own.some((x) => x.to === 'test/architecture/imports.ts' && !x.typeOnly));
    const cli = edges.filter((x) => x.from === 'src/cli/main.ts');
    assert.ok(cli.length > 0, 'src/cli/main.ts has imports');
  });
});
