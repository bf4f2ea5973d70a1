// Runs every compiled *.test.js under dist/ with Node's test runner.
// Node 20's runner takes no globs, so the list is built here. Arguments filter by substring.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = walk('dist', [])
  .filter((f) => !f.includes('node_modules'))
  // A compiled test whose source was deleted or renamed stays in dist/ (tsc never deletes):
  // run only tests that still have a source file.
  .filter((f) => existsSync(f.slice('dist/'.length).replace(/\.js$/, '.ts')))
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
// A test file whose failed test left a child running (a daemon its `finally` did not stop) must not
// hang the whole run: --test-force-exit (Node 20.14+) ends each file when its tests are done, and
// the support kits' exit hooks then SIGKILL the children they started.
const [major, minor] = process.versions.node.split('.').map(Number);
const forceExit = major > 20 || (major === 20 && minor >= 14) ? ['--test-force-exit'] : [];
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...forceExit, ...files], {
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
