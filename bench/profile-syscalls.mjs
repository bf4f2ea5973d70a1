// Turns `perf trace -s` output (per-thread syscall summaries) into system calls per message,
// all threads of the process together, by kind.
//   node bench/profile-syscalls.mjs SUMMARY.txt MESSAGES
import { readFileSync } from 'node:fs';

const [file, nArg] = process.argv.slice(2);
const n = Number(nArg);
if (!file || !(n > 0)) {
  console.error('usage: node bench/profile-syscalls.mjs SUMMARY.txt MESSAGES');
  process.exit(64);
}
const calls = new Map();
let thread = '';
const threads = new Map();
for (const line of readFileSync(file, 'utf8').split('\n')) {
  const t = /^\s*(\S+) \((\d+)\), (\d+) events/.exec(line);
  if (t) {
    thread = `${t[1]}(${t[2]})`;
    continue;
  }
  const m = /^\s+([a-z0-9_]+)\s+(\d+)\s+(\d+)\s+[\d.]+/.exec(line);
  if (!m || m[1] === 'syscall') continue;
  calls.set(m[1], (calls.get(m[1]) ?? 0) + Number(m[2]));
  const key = thread.replace(/\(\d+\)$/, '');
  threads.set(key, (threads.get(key) ?? 0) + Number(m[2]));
}
let sum = 0;
for (const v of calls.values()) sum += v;
console.log(`system calls per message: ${(sum / n).toFixed(2)} (${sum} over ${n} messages)`);
for (const [k, v] of [...calls.entries()].sort((a, b) => b[1] - a[1]).slice(0, 15))
  console.log(`  ${(v / n).toFixed(2).padStart(7)}  ${k}`);
console.log('by thread name:');
for (const [k, v] of [...threads.entries()].sort((a, b) => b[1] - a[1]))
  console.log(`  ${(v / n).toFixed(2).padStart(7)}  ${k}`);
