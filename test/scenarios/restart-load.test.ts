// An upgrade as a postmaster (or a package's postinst, or a script without systemd's wait) does it
// on a busy host: SIGTERM to the running `logmta serve` and at once a new `logmta serve` on the
// same configuration, queue and port, while clients keep sending and retry whatever they meet (a
// refused connect, a 421). The old daemon is still in its grace — finishing transactions,
// waiting for deliveries to a slow next hop — and holds the queue. What must hold: the new one
// does not fail (no queue-lock error, no EADDRINUSE) but says that it waits and starts once the
// old one is gone; nothing acknowledged is lost, nothing is delivered twice. A second start
// while the first daemon runs normally is still refused.
// Fails: with the new daemon's stderr when it does not come up, or the Message-IDs lost or twice.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { needTools, runLogmta, spawnDaemon } from '../support/daemon.js';
import { waitFor } from '../support/wait.js';
import { scenes } from './kit.js';
import { audit, copiesById, relayStage, slowSink, Traffic } from './traffic-kit.js';

const scene = scenes();

describe('restart under load', { skip: needTools('python3', 'swaks') }, () => {
  test('SIGTERM and at once a new serve on the same queue and port: it waits for the old one, nothing lost or twice', async () => {
    const { sink, takenAt } = await slowSink(1_500);
    const { s, port } = await relayStage(scene.stage, sink.port);
    const traffic = new Traffic(s.dir);
    try {
      for (const name of ['py-a', 'py-b'])
        traffic.python(name, port, { from: 'app@app.test', to: ['u@local.test', 'x@r.test'], perSession: 2 });
      traffic.swaks('swaks', port, { from: 'sw@else.test', to: 'v@local.test' });
      await waitFor(
        () => [...takenAt.values()].some((t) => Date.now() - t < 1_000) && takenAt.size >= 3,
        'deliveries on the wire',
        30_000,
      );
      // A second start while it runs normally is refused at once, as before.
      const twin = await runLogmta(['serve', '--config', s.daemon.configFile!], { cwd: s.dir });
      assert.equal(twin.code, 70, twin.stderr);
      assert.match(twin.stderr, /in use by process \d+/);

      const old = s.daemon;
      old.kill('SIGTERM');
      const next = await spawnDaemon({
        dir: s.dir,
        args: ['--config', old.configFile!],
        startTimeoutMs: 30_000,
      });
      s.adopt(next);
      const oldExit = await old.exited;
      assert.deepEqual(oldExit, { code: 0, signal: null });
      assert.equal(next.port, port, 'the new daemon has the port');
      assert.match(next.stdout(), /waiting for it to exit/, 'the new daemon said that it waits');

      await traffic.progress(traffic.snapshot(), 2, 'mail through the new daemon', 60_000);
      await traffic.stop();
      const events = traffic.events();
      const expected = (id: string): number => (id.startsWith('<py-') ? 2 : 1);
      const mail = join(s.dataDir, 'mail');
      await waitFor(
        () => audit(events, copiesById(mail, [sink]), expected).lost === 0,
        'every acknowledged message delivered',
        60_000,
      );
      const v = audit(events, copiesById(mail, [sink]), expected);
      const odd = events.filter(
        (e) =>
          !['acked', 'end', 'paused', 'resumed'].includes(e.ev) &&
          !(e.ev === 'refused' && e.code === 421) &&
          // While no daemon listens: refused, or reset when the old one closed its port with the
          // connection still in the kernel's accept queue (before any greeting: nothing sent).
          !(e.stage === 'connect' && /Connection refused|Connection reset by peer/.test(e.err ?? '')) &&
          !(e.client === 'swaks' && /Connection refused|closed connection unexpectedly/.test(e.err ?? '')),
      );
      console.log(
        `acked ${v.acked}, lost ${v.lost}, duplicated ${v.duplicated}; client retries: ` +
          `${events.filter((e) => /Connection refused/.test(e.err ?? '')).length} refused connects, ` +
          `${events.filter((e) => e.code === 421).length} × 421`,
      );
      assert.deepEqual(v.problems, []);
      assert.deepEqual(
        odd.map((e) => `${e.client} ${e.ev} ${e.stage ?? ''} ${e.code ?? ''} ${e.text ?? e.err ?? ''}`),
        [],
        'clients met only 2xx, 421 and refused (or reset) connects',
      );
    } finally {
      await traffic.stop();
      await sink.close();
    }
  });
});
