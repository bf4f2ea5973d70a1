// A queue written by a host whose clock was 40 days ahead, then served by `logmta serve` with
// the clock put right, and a configuration with timers longer than setTimeout's 24.8 days
// (probe_interval = "30d"). Before the fix every such timer fired after 1 ms and was re-armed at
// once (TimeoutOverflowWarning ~1,900 times a second, a core busy), and the deferred mail would
// have waited 40 days for the wrong clock.
// Properties: the mail is delivered at once; the daemon prints no TimeoutOverflowWarning and
// stays idle (CPU time over a second of idling well under 10% of a core).
// Fails: naming what was not delivered, the warning, or the CPU time measured.
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { systemClock } from '../../src/util/clock.js';
import {
  closedPort,
  makeTempDir,
  SmtpChat,
  type SpawnedDaemon,
  spawnDaemon,
  startTestDaemon,
  testToml,
  waitFor,
} from '../support/daemon.js';
import { peakRssOf, rssOf } from '../support/bigmail.js';
import { SmtpSink } from '../support/sink.js';
import { internals } from '../../src/queue/queue.js';

const DAY = 86_400_000;
const dir = makeTempDir('logmta-clock-');
let daemon: SpawnedDaemon | undefined;
let sink: SmtpSink | undefined;
after(async () => {
  await daemon?.stop(2_000);
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

const config = (port: number) => `
[smtp]
relay_networks = ["127.0.0.0/8"]
[[route]]
domain = "*"
host = "127.0.0.1:${port}"
[queue]
retry = ["1h"]
[[etrn]]
domain = "etrn.test"
host = "127.0.0.1:${port}"
probe_interval = "30d"
`;

/** User plus system CPU time of a process, in ms (from /proc/<pid>/stat, clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

test('mail queued under a clock 40 days ahead is delivered at once, and 30-day timers do not spin', {
  skip: process.platform === 'linux' ? false : 'needs /proc (Linux)',
  timeout: 60_000,
}, async (t) => {
  // 1. The host with the wrong clock: three messages deferred (their host refuses) into the 1h rung.
  const ahead = { now: () => Date.now() + 40 * DAY, setTimer: systemClock.setTimer };
  const wrong = await startTestDaemon({ dir, toml: config(await closedPort()), deps: { clock: ahead } });
  for (let i = 0; i < 3; i++) {
    const { chat } = await SmtpChat.open(wrong.port);
    await chat.ask('EHLO clock.test\r\n');
    const r = await chat.ask(`MAIL FROM:<a@clock.test>\r\nRCPT TO:<r${i}@remote.test>\r\nDATA\r\n`, 3);
    assert.deepEqual(
      r.map((x) => x.slice(0, 3)),
      ['250', '250', '354'],
    );
    assert.match((await chat.ask(`Subject: clock ${i}\r\n\r\nbody\r\n.\r\n`))[0]!, /^250 /);
    chat.close();
  }
  const retry = () => internals(wrong.daemon.queues.list[0]!).core.findLane('retry-3600s')?.live ?? 0;
  await waitFor(() => retry() === 3, 'three deferrals');
  await wrong.stop();

  // 2. The clock put right: a real `logmta serve` on the same queue, its destination up.
  sink = await SmtpSink.start();
  const cfg = `${dir}/logmta.toml`;
  writeFileSync(cfg, testToml(config(sink.port), `${dir}/data`));
  daemon = await spawnDaemon({ dir, args: ['--config', cfg] });
  const rss0 = rssOf(daemon.child.pid);
  await waitFor(() => sink!.transactions.length >= 3, 'the three deferred messages at the sink', 15_000);
  assert.deepEqual(sink.transactions.flatMap((x) => x.recipients).sort(), [
    'r0@remote.test',
    'r1@remote.test',
    'r2@remote.test',
  ]);
  // 3. Idle now, with a 30-day probe timer armed: no spinning. Measured after a second to
  // settle (the start-up's own work — the session thread's compiling, a GC — is not idling),
  // over two seconds: a spinning timer would take most of a core.
  const pid = daemon.child.pid!;
  await new Promise((r) => setTimeout(r, 1_000));
  const c0 = cpuMs(pid);
  const w0 = Date.now();
  await new Promise((r) => setTimeout(r, 2_000));
  const used = cpuMs(pid) - c0;
  const share = used / (Date.now() - w0);
  const mib = (b: number) => Math.round(b / 2 ** 20);
  t.diagnostic(
    `idle daemon used ${used} ms of CPU in ${Date.now() - w0} ms; ${sink.transactions.length} delivered of 3; RSS ${mib(rss0)} MiB at start, peak ${mib(peakRssOf(pid))}, ${mib(rssOf(pid))} after`,
  );
  const out = daemon.stderr() + daemon.stdout();
  assert.doesNotMatch(out, /TimeoutOverflowWarning/);
  assert.ok(share < 0.1, `the idle daemon used ${(share * 100).toFixed(0)}% of a core`);
});
