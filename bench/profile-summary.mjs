// Summarises a V8 .cpuprofile (node --cpu-prof) in proportions, which survive a loaded machine
// better than rates: self time by kind (idle, GC, native, Node internals, dependencies, our
// folders), the top functions by self time, and time charged to our nearest source file (each
// sample goes to the innermost frame that is in dist/src/ — "whose code caused this").
//   node bench/profile-summary.mjs FILE.cpuprofile [--top N]
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: node bench/profile-summary.mjs FILE.cpuprofile [--top N]');
  process.exit(64);
}
const topIdx = process.argv.indexOf('--top');
const TOP = topIdx > 0 ? Number(process.argv[topIdx + 1]) : 30;
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map();
for (const n of prof.nodes) byId.set(n.id, n);
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const self = new Map(); // node id -> µs
let total = 0;
for (let i = 0; i < prof.samples.length; i++) {
  const dt = prof.timeDeltas[i] ?? 0;
  const id = prof.samples[i];
  self.set(id, (self.get(id) ?? 0) + dt);
  total += dt;
}

function srcOf(url) {
  const m = /\/dist\/(src|bench)\/(.*)\.js$/.exec(url);
  return m ? `${m[1] === 'bench' ? 'bench/' : ''}${m[2]}` : null;
}
function kindOf(n) {
  const { functionName: f, url } = n.callFrame;
  if (f === '(idle)') return '(idle)';
  if (f === '(garbage collector)') return '(garbage collector)';
  if (f === '(program)') return '(program: V8/native outside JS)';
  if (f === '(root)') return '(root)';
  if (url === '') return `native ${f}`;
  const src = srcOf(url);
  if (src)
    return `ours ${src
      .split('/')
      .slice(0, src.startsWith('smtp/') ? 2 : 1)
      .join('/')}`;
  const dep = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dep) return `dependency ${dep[1]}`;
  if (url.startsWith('node:')) return `node ${url.replace(/^node:(internal\/)?/, '')}`;
  return url;
}
const pct = (us) => ((100 * us) / total).toFixed(1).padStart(5);
function table(title, m, limit) {
  console.log(`\n${title}`);
  const rows = [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, limit);
  for (const [k, v] of rows) console.log(`${pct(v)}%  ${k}`);
}

const kinds = new Map();
const funcs = new Map();
const charged = new Map();
for (const [id, us] of self) {
  const n = byId.get(id);
  const k = kindOf(n);
  kinds.set(k, (kinds.get(k) ?? 0) + us);
  const { functionName, url, lineNumber } = n.callFrame;
  const where = url ? `${srcOf(url) ?? url.replace(/^.*node_modules\//, '')}:${lineNumber + 1}` : '';
  const fk = `${functionName || '(anonymous)'} ${where}`;
  funcs.set(fk, (funcs.get(fk) ?? 0) + us);
  let cur = id;
  let owner = null;
  while (cur !== undefined) {
    const s = srcOf(byId.get(cur).callFrame.url);
    if (s) {
      owner = s;
      break;
    }
    cur = parent.get(cur);
  }
  if (owner === null) owner = k.startsWith('(') ? k : `(no frame of ours) ${k}`;
  charged.set(owner, (charged.get(owner) ?? 0) + us);
}
// Inclusive time of our functions: each sample counts once for every function of ours on its stack.
const incl = new Map();
const keyOf = (n) => {
  const { functionName, url, lineNumber } = n.callFrame;
  return `${functionName || '(anonymous)'} ${srcOf(url)}:${lineNumber + 1}`;
};
for (const [id, us] of self) {
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const n = byId.get(cur);
    if (!srcOf(n.callFrame.url)) continue;
    const k = keyOf(n);
    if (seen.has(k)) continue;
    seen.add(k);
    incl.set(k, (incl.get(k) ?? 0) + us);
  }
}
const idle = kinds.get('(idle)') ?? 0;
console.log(`profile ${file}`);
console.log(
  `${(total / 1e6).toFixed(2)} s sampled, ${prof.samples.length} samples; busy ${pct(total - idle)}% of the main thread`,
);
table('self time by kind (% of all samples)', kinds, 25);
table(`top ${TOP} functions by self time`, funcs, TOP);
table('time charged to our innermost source file (samples under a frame of ours)', charged, 25);
table(`top ${TOP} functions of ours by inclusive time`, incl, TOP);
