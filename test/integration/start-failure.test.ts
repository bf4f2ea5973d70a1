// A start that fails half-way leaves nothing running: when the last SMTP listener cannot bind
// (its port is taken) after the queue, the delivery pool, the ODMR provider and the first SMTP
// listener have started, startDaemon rejects with LISTEN_FAILED naming the address and the key,
// and has stopped everything it started — no timer still scheduled through its clock, the
// ODMR port free again — so a second start in the same process on the same data works.
// (test/integration/serve-cli.test.ts checks the same through `logmta serve`: exit 70.)
// Fails: naming what was left running.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, test } from 'node:test';
import { nullLogger } from '../../src/log.js';
import { type Clock, systemClock } from '../../src/util/clock.js';
import { closedPort, makeTempDir, startTestDaemon } from '../support/daemon.js';
import { rmSync } from 'node:fs';

const dir = makeTempDir('logmta-startfail-');
after(() => rmSync(dir, { recursive: true, force: true }));

/** The system clock, counting timers that are scheduled and neither fired nor cancelled. */
function trackingClock(): Clock & { live(): number } {
  let live = 0;
  return {
    now: () => systemClock.now(),
    setTimer(ms, fn) {
      live++;
      let done = false;
      const end = (): void => {
        if (!done) live--;
        done = true;
      };
      const cancel = systemClock.setTimer(ms, () => {
        end();
        fn();
      });
      return () => {
        end();
        cancel();
      };
    },
    live: () => live,
  };
}

function canBind(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = net.createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

test('a listener that cannot bind: startDaemon rejects naming it and leaves nothing running; the next start works', async () => {
  const holder = net.createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  const taken = (holder.address() as net.AddressInfo).port;
  const odmrPort = await closedPort(); // free now; the first start binds it
  const toml = (submission: number): string =>
    [
      '[smtp]',
      'listen = ["127.0.0.1:0"]',
      `submission = ["127.0.0.1:${submission}"]`,
      '[odmr]',
      `listen = ["127.0.0.1:${odmrPort}"]`,
      '[[odmr.account]]',
      'user = "c"',
      'password = "p"',
      'domains = ["c.example"]',
      '[[etrn]]',
      'domain = "e.example"',
      'host = "127.0.0.1:1"',
    ].join('\n');
  const clock = trackingClock();
  try {
    await assert.rejects(
      startTestDaemon({ dir, toml: toml(taken), logger: nullLogger, deps: { clock } }),
      (e: Error & { code?: string }) => {
        assert.equal(e.code, 'LISTEN_FAILED');
        assert.match(
          e.message,
          new RegExp(
            `cannot listen on 127\\.0\\.0\\.1:${taken} \\(smtp\\.submission\\[1\\]\\): the address is already in use`,
          ),
        );
        return true;
      },
    );
  } finally {
    await new Promise<void>((r) => holder.close(() => r()));
  }
  assert.equal(
    clock.live(),
    0,
    'timers of the failed start are still scheduled (queue runners, sweeps, probes)',
  );
  assert.ok(await canBind(odmrPort), 'the ODMR listener of the failed start is still open');

  const d = await startTestDaemon({ dir, toml: toml(0), logger: nullLogger });
  try {
    assert.equal(d.daemon.addresses.odmr[0], `127.0.0.1:${odmrPort}`);
    assert.ok(d.submissionPort !== undefined && d.submissionPort > 0);
  } finally {
    await d.stop();
  }
});
