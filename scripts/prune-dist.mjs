// Removes compiled files from dist/ whose TypeScript source no longer exists (tsc never deletes
// outputs): after a file is moved or removed, its old .js would otherwise stay importable — a
// test could pass against a module that is gone — and `npm pack` would ship it.
// Runs before tsc in `npm run build`; touches only dist/src, dist/test and dist/bench.
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

function walk(dir, out) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else out.push(p);
  }
  return out;
}

let removed = 0;
for (const top of ['src', 'test', 'bench']) {
  for (const f of walk(join('dist', top), [])) {
    const m = /^dist\/(.*)\.js(\.map)?$/.exec(f);
    if (!m) continue;
    if (!existsSync(`${m[1]}.ts`)) {
      rmSync(f);
      removed++;
    }
  }
}
if (removed > 0) console.log(`prune-dist: removed ${removed} compiled file(s) without a source`);
