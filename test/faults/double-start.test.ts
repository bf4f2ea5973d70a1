// Two `logmta serve` processes started at the same moment on one data directory: exactly one may
// come up; the other must exit saying the queue is in use, without disturbing the winner (its
// control socket still answers). Before the fix the lock was read, checked and written without
// atomicity, so both could own the queue. LOGMTA_DOUBLE_START_TRIALS (default 5) trials.
// Fails: naming the trial in which both or neither came up, or the winner's broken socket.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { LOGMTA_BIN, makeTempDir, runTool, type SpawnedDaemon, spawnDaemon } from '../support/daemon.js';

const TRIALS = Number(process.env.LOGMTA_DOUBLE_START_TRIALS ?? 5);

test(`of two daemons started at once on one queue exactly one runs (${TRIALS} trials)`, {
  timeout: 300_000,
}, async (t) => {
  for (let trial = 1; trial <= TRIALS; trial++) {
    const dir = makeTempDir('logmta-double-');
    try {
      const starts = await Promise.allSettled([spawnDaemon({ dir }), spawnDaemon({ dir })]);
      const up = starts.filter((s): s is PromiseFulfilledResult<SpawnedDaemon> => s.status === 'fulfilled');
      const down = starts.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      try {
        assert.equal(up.length, 1, `trial ${trial}: ${up.length} daemons came up`);
        assert.match(
          String(down[0]!.reason),
          // The winner may hold the lock before it has written its pid: both texts name the directory.
          /exited \(code 70[\s\S]*queue directory .* is in use (by process \d+|\(it holds a lock on )/,
        );
        const r = await runTool(process.execPath, [
          LOGMTA_BIN,
          'queue',
          'summary',
          '--config',
          join(dir, 'logmta.toml'),
        ]);
        assert.equal(r.code, 0, `trial ${trial}: the winner's control socket: ${r.stderr}`);
      } finally {
        await Promise.all(up.map((u) => u.value.stop(5_000)));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  t.diagnostic(`${TRIALS} trials: one daemon up and one refused each time`);
});
