// Long run (outside CI): the six slow clients of test/faults/slowloris.test.ts against a
// `logmta serve` with the DEFAULT limits (command_timeout and data_line_timeout 5 minutes,
// min_data_rate 500 octets/s, idle_timeout 5 minutes), at one byte per second. Prints how long
// after its first trickled byte each was cut; the figures in docs/reliability.md come from here.
// Usage: node dist/test/long/slowloris.js [--step-ms 1000] [--units 1000] [--toml 'extra [smtp] keys']
// Exit code: 0 when every client was cut before its trickle ended, 1 otherwise.

import { parseArgs } from 'node:util';
import { TLS_TOML, tlsFiles } from '../support/certs.js';
import { spawnDaemon } from '../support/daemon.js';
import { trickleAll } from '../support/slowloris.js';

const { values } = parseArgs({
  options: {
    'step-ms': { type: 'string', default: '1000' },
    units: { type: 'string', default: '1000' },
    toml: { type: 'string', default: '' },
  },
});
const stepMs = Number(values['step-ms']);
const units = Number(values.units);
const d = await spawnDaemon({
  files: await tlsFiles(),
  toml: [
    '[smtp]',
    'listen = ["127.0.0.1:0"]',
    'submissions = ["127.0.0.1:0"]',
    values.toml ?? '',
    TLS_TOML,
  ].join('\n'),
});
console.log(`logmta serve on ${d.port} (submissions ${d.submissionsPort}); one byte every ${stepMs} ms`);
const t0 = Date.now();
const cuts = await trickleAll(d.port, d.submissionsPort ?? 0, stepMs, units);
let ok = true;
for (const { what, cut, reply } of cuts) {
  const cutOff = cut.unsent > 0 && (reply === null || reply.test(cut.said));
  ok &&= cutOff;
  console.log(
    `${what.padEnd(20)} ${cutOff ? 'cut' : 'NOT CUT'} after ${(cut.ms / 1000).toFixed(1)} s, ` +
      `${cut.unsent} octets unsent; said ${JSON.stringify(cut.said.trim())}`,
  );
}
console.log(`total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
await d.stop();
process.exit(ok ? 0 : 1);
