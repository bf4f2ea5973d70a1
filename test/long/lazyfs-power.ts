// Long run (outside CI) of the LazyFS power-loss loop (test/support/power-loss.ts): at least 100
// cycles of load and power cuts — SIGKILL + LazyFS's clear-cache, crashes before/after every
// fsync, write, create and unlink of the new, data and retry lanes, torn writes — then a drain,
// and the figures: acknowledged / delivered / bounced / lost / duplicated. The sink refuses a
// share of the mail for good (--refuse, default 0.05), so bounces are made and cut too: a refused
// message counts as arrived when a bounce the sink received names it.
// Usage: node dist/test/long/lazyfs-power.js [--cycles 102] [--seed N] [--clients 8]
//        [--min-ms 400] [--max-ms 1500] [--refuse 0.05] [--keep] [--json]
// Needs LazyFS built (scripts/lazyfs-build.sh) and /dev/fuse; exits 2 with the reason otherwise.
// Exit code: 0 when nothing acknowledged was lost and every check held, 1 otherwise.

import { parseArgs } from 'node:util';
import { findLazyFs } from '../support/lazyfs.js';
import { runPowerLoss } from '../support/power-loss.js';

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '102' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    clients: { type: 'string', default: '8' },
    'min-ms': { type: 'string', default: '400' },
    'max-ms': { type: 'string', default: '1500' },
    refuse: { type: 'string', default: '0.05' },
    keep: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});

const tool = findLazyFs();
if ('skip' in tool) {
  console.error(`lazyfs-power: ${tool.skip}`);
  process.exit(2);
}
const cycles = Number(values.cycles);
const seed = Number(values.seed);
console.error(`lazyfs-power: ${cycles} cycles, seed ${seed}`);
const r = await runPowerLoss({
  binary: tool.binary,
  cycles,
  seed,
  clients: Number(values.clients),
  loadMs: [Number(values['min-ms']), Number(values['max-ms'])],
  crashes: 'all',
  refuseRate: Number(values.refuse),
  keep: values.keep,
  log: (l) => console.error(l),
});
const problems = [
  ...r.lostIds.map((id) => `lost: ${id}`),
  ...r.truncated.map((id) => `truncated: ${id}`),
  ...r.duplicatedInOneRun.map((x) => `delivered twice in one run: ${x}`),
  ...r.verifyMismatches,
  ...r.unexpectedTornTails,
  ...r.daemonExits.filter((x) => x.includes('LazyFS alive')),
  ...(r.finalLive !== 0 ? [`${r.finalLive} messages left after the drain`] : []),
  ...(r.finalStatus !== 'clean' ? [`final verify: ${r.finalStatus}`] : []),
];
if (values.json) console.log(JSON.stringify({ ...r, problems }));
else {
  const fired = new Map<string, number>();
  for (const f of r.fired)
    fired.set(f.replace(/ parts=.*/, ''), (fired.get(f.replace(/ parts=.*/, '')) ?? 0) + 1);
  console.log(
    [
      `cycles        ${r.cycles} (seed ${r.seed}, ${Math.round(r.durationMs / 1000)} s)`,
      `faults        ${r.faults.power} power cuts, ${r.faults.op} operation crashes, ${r.faults.torn} torn writes, ` +
        `${r.faults.fallback} armed faults that did not come (power cut instead), ${r.faults.unplanned} LazyFS aborts`,
      `fired         ${[...fired].map(([k, n]) => `${k} ×${n}`).join('; ')}`,
      `attempted     ${r.attempted}`,
      `acknowledged  ${r.acknowledged}`,
      `delivered     ${r.delivered}`,
      `bounced       ${r.bounced} (refused for good, named in a bounce; ${r.bouncedAndDelivered} of them also delivered by a retry)`,
      `lost          ${r.lost}`,
      `duplicated    ${r.duplicated} (every one across a power cut: ${r.duplicatedInOneRun.length === 0 ? 'yes' : 'NO'})`,
      `unacked recv  ${r.deliveredUnacknowledged} (delivered, but the 250 never reached the client)`,
      `recovery      ${r.tornTails} torn tails cut, ${r.corruptions} corrupt segments set aside; verify agreed at every start: ${r.verifyMismatches.length === 0 ? 'yes' : 'NO'}`,
      `spares        ${r.sparesAtStarts} spare segment files found by the starts (freed segments kept for reuse)`,
      `cut short     ${r.cutShortTails} torn tails after cuts that tore no write were batches cut short (another batch in flight to the segment synced)`,
      `restart       avg ${r.restartMsAvg} ms, max ${r.restartMsMax} ms`,
      `drained       ${r.finalLive} left, verify ${r.finalStatus}`,
      ...problems.map((p) => `PROBLEM       ${p}`),
    ].join('\n'),
  );
}
process.exit(problems.length === 0 ? 0 : 1);
