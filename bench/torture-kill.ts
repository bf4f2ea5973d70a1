// Kill torture, the long run: `node dist/bench/torture-kill.js` runs the torture of
// test/support/kill-torture.ts (a load generator, a `logmta serve` child SIGKILLed at random
// moments and restarted, a counting sink) for many cycles and prints acknowledged / delivered /
// lost / duplicated. The bounded CI run is test/faults/kill-torture.test.ts.
// Usage: node dist/bench/torture-kill.js [--cycles 50] [--connections 50] [--min-ms 300]
//        [--max-ms 1500] [--drain-ms 180000] [--seed N] [--json]
// Exit code: 0 when nothing acknowledged was lost, 1 otherwise.

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { runTorture, type TortureOptions } from '../test/support/kill-torture.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cycles: { type: 'string', default: '50' },
      connections: { type: 'string', default: '50' },
      'min-ms': { type: 'string', default: '300' },
      'max-ms': { type: 'string', default: '1500' },
      'drain-ms': { type: 'string', default: '180000' },
      seed: { type: 'string', default: String(Date.now() % 1_000_000) },
      json: { type: 'boolean', default: false },
    },
  });
  const opts: TortureOptions = {
    cycles: Number(values.cycles),
    connections: Number(values.connections),
    minMs: Number(values['min-ms']),
    maxMs: Number(values['max-ms']),
    drainMs: Number(values['drain-ms']),
    seed: Number(values.seed),
    log: (l) => process.stderr.write(`${l}\n`),
  };
  process.stderr.write(`kill torture: ${JSON.stringify({ ...opts, log: undefined })}\n`);
  const r = await runTorture(opts);
  if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else {
    process.stdout.write(
      [
        `cycles ${r.cycles}, connections ${r.connections}, ${Math.round(r.durationMs / 1000)} s, seed ${opts.seed}`,
        `attempted     ${r.attempted}`,
        `acknowledged  ${r.acknowledged}`,
        `delivered     ${r.delivered}`,
        `lost          ${r.lost}${r.lost ? ` (ids ${r.lostIds.join(',')})` : ''}`,
        `duplicated    ${r.duplicated}`,
        `delivered without a 250 seen: ${r.deliveredUnacknowledged}`,
        `delivered but never sent: ${r.deliveredUnsent}`,
        `restart to ready: avg ${r.restartMsAvg} ms, max ${r.restartMsMax} ms`,
      ].join('\n') + '\n',
    );
  }
  process.exitCode = r.lost === 0 ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    process.stderr.write(`torture-kill: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exitCode = 2;
  });
}
