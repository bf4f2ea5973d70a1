// Runs the compiled suite as on a fresh machine without the optional programs (swaks, fetchmail,
// postfix, chromium, python3, testssl.sh, openssl, ...: OPTIONAL_TOOLS in test/support/tools.ts):
// they are taken off PATH (a temporary directory of links to everything else on PATH) and
// hidden from the tests' one detection helper (LOGMTA_TEST_HIDE_TOOLS=all), so every test that
// needs one must skip with its reason and everything else must pass.
// Usage: npm run build && node scripts/test-without-tools.mjs [SUBSTRING...]
// (arguments filter test files like scripts/test.mjs). Exit status: that of the test run.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const toolsModule = new URL('../dist/test/support/tools.js', import.meta.url);
if (!existsSync(toolsModule)) {
  console.error('dist/ is not built: run `npm run build` first');
  process.exit(1);
}
const { OPTIONAL_TOOLS } = await import(toolsModule.href);
const hide = new Set(OPTIONAL_TOOLS);

const shadow = mkdtempSync(join(tmpdir(), 'logmta-nopath-'));
const seen = new Set();
let linked = 0;
for (const dir of (process.env.PATH ?? '').split(':').filter((d) => d !== '')) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    continue;
  }
  for (const name of names) {
    if (seen.has(name) || hide.has(name)) continue;
    const p = join(dir, name);
    try {
      if (!statSync(p).isFile()) continue;
    } catch {
      continue;
    }
    seen.add(name);
    symlinkSync(p, join(shadow, name));
    linked++;
  }
}
console.error(
  `test-without-tools: hiding ${[...hide].join(', ')}; ${linked} other programs stay on PATH (${shadow})`,
);
const r = spawnSync(
  process.execPath,
  [new URL('./test.mjs', import.meta.url).pathname, ...process.argv.slice(2)],
  {
    stdio: 'inherit',
    env: { ...process.env, PATH: shadow, LOGMTA_TEST_HIDE_TOOLS: 'all' },
  },
);
rmSync(shadow, { recursive: true, force: true });
process.exit(r.status ?? 1);
