// The tests' tool detection: PATH lookup, absolute paths, and hiding through
// LOGMTA_TEST_HIDE_TOOLS (checked in a child process, since answers are cached per process).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hasTool, needTools, toolPath } from './tools.js';

const self = fileURLToPath(new URL('./tools.js', import.meta.url));

function inChild(hide: string, expr: string): string {
  const r = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import * as t from ${JSON.stringify(self)}; console.log(JSON.stringify(${expr}));`,
    ],
    { env: { ...process.env, LOGMTA_TEST_HIDE_TOOLS: hide }, encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test('a program on PATH is found, by name or by absolute path; a missing one is not', () => {
  assert.equal(hasTool('node') || hasTool(process.execPath), true);
  assert.equal(toolPath(process.execPath), process.execPath);
  assert.equal(hasTool('no-such-program-logmta'), false);
  assert.equal(needTools('no-such-program-logmta'), 'no-such-program-logmta is not installed');
  assert.equal(needTools(process.execPath), false);
});

test('LOGMTA_TEST_HIDE_TOOLS hides named tools (also given by path) and "all" hides all but the base ones', () => {
  assert.equal(inChild('sh', `[t.hasTool('sh'), t.hasTool('/bin/sh')]`), '[false,false]');
  assert.equal(inChild('/bin/sh', `t.hasTool('sh')`), 'false');
  assert.equal(inChild('all', `[t.hasTool('sh'), t.hasTool('npm') === t.hasTool('npm')]`), '[false,true]');
  assert.equal(inChild('', `t.hasTool('sh')`), 'true');
});
