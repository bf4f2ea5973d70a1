// Crash test of the receiving path (DESIGN rule 1: 250 after DATA means durable): 20 clients
// send distinct messages over many connections to a `logmta serve` child process that is
// SIGKILLed at random moments and restarted on the same data, CYCLES times. Deliveries can never
// complete during the cycles (every domain routes to 127.0.0.1:1, which refuses), so everything
// acknowledged stays queued. At the end an in-process daemon on the same data, routed to a sink,
// delivers the queue; every message that got a 250 must arrive, and none twice.
// CYCLES defaults to 10 (LOGMTA_CRASH_CYCLES overrides, e.g. 100 for a long local run); the
// random schedule comes from LOGMTA_CRASH_SEED (printed) so a failure can be replayed.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, test } from 'node:test';
import {
  codeOf,
  makeTempDir,
  SmtpChat,
  type SpawnedDaemon,
  spawnDaemon,
  startTestDaemon,
  type TestDaemon,
  waitFor,
} from '../support/daemon.js';
import { prng } from '../support/prng.js';
import { SmtpSink } from '../support/sink.js';

const CYCLES = Number(process.env.LOGMTA_CRASH_CYCLES ?? 10);
const CLIENTS = 20;
const SEED = Number(process.env.LOGMTA_CRASH_SEED ?? Date.now() % 1_000_000);

const rand = prng(SEED);

const dir = makeTempDir('logmta-crash-');
const children: SpawnedDaemon[] = [];
let final: TestDaemon | undefined;
let sink: SmtpSink | undefined;

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await final?.stop();
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

const DEAD_ROUTE = `
[smtp]
relay_networks = ["127.0.0.0/8"]
[[route]]
domain = "*"
host = "127.0.0.1:1"
[queue]
retry = ["1h"]
segment_size = "256KiB"
`;

interface Tally {
  acked: Set<string>;
  sent: number;
  refused: number;
}

/** One client: connections one after another, a few messages each, until told to stop or cut off. */
async function client(
  port: number,
  cycle: number,
  worker: number,
  stop: { now: boolean },
  tally: Tally,
): Promise<void> {
  let n = 0;
  while (!stop.now) {
    let chat: SmtpChat;
    try {
      chat = (await SmtpChat.open(port)).chat;
    } catch {
      return; // the daemon is gone
    }
    try {
      if (codeOf((await chat.ask('EHLO crash.test\r\n'))[0] ?? '') !== '250') return;
      const perConnection = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < perConnection && !stop.now; k++) {
        const id = `c${cycle}-w${worker}-${n++}`;
        const r = await chat.ask(`MAIL FROM:<s@example.org>\r\nRCPT TO:<${id}@far.example>\r\nDATA\r\n`, 3);
        if (r.length < 3 || !r[2]?.startsWith('354')) return;
        const filler = `${'x'.repeat(70)}\r\n`.repeat(Math.floor(rand() * 200));
        tally.sent++;
        const [end] = await chat.ask(
          `Message-ID: <${id}@crash.test>\r\nSubject: ${id}\r\n\r\n${filler}end of ${id}\r\n.\r\n`,
        );
        if (end === undefined) return; // cut off before the reply: may or may not be queued
        if (end.startsWith('250 ')) tally.acked.add(id);
        else {
          tally.refused++;
          return;
        }
      }
      await chat.ask('QUIT\r\n');
    } catch {
      return;
    } finally {
      chat.close();
    }
  }
}

test(`every message acknowledged with 250 survives ${CYCLES} SIGKILLs of logmta serve`, {
  timeout: 120_000,
}, async (t) => {
  t.diagnostic(`seed ${SEED} (LOGMTA_CRASH_SEED to replay), ${CYCLES} cycles, ${CLIENTS} clients`);
  const tally: Tally = { acked: new Set(), sent: 0, refused: 0 };
  const t0 = Date.now();
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const c = await spawnDaemon({ dir, toml: DEAD_ROUTE });
    children.push(c);
    const stop = { now: false };
    const workers = Array.from({ length: CLIENTS }, (_, w) => client(c.port, cycle, w, stop, tally));
    // Kill at a random moment while the clients are busy (between 150 and 900 ms in).
    await new Promise((r) => setTimeout(r, 150 + rand() * 750));
    c.kill('SIGKILL');
    stop.now = true;
    const exit = await c.exited;
    assert.equal(exit.signal, 'SIGKILL', `cycle ${cycle}: the daemon died of something else: ${c.stderr()}`);
    await Promise.all(workers);
    const rec = c
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"recovered queue"'))
      .map((l) => JSON.parse(l) as { corruptions?: number });
    for (const r of rec) assert.equal(r.corruptions, 0, `cycle ${cycle}: recovery found corruption`);
  }
  const crashMs = Date.now() - t0;
  assert.ok(tally.acked.size > CYCLES * 5, `only ${tally.acked.size} messages were acknowledged`);

  // Deliver everything that is queued to a sink and compare.
  sink = await SmtpSink.start({ pipelining: true });
  final = await startTestDaemon({
    dir,
    keepDir: true,
    toml: `
[smtp]
relay_networks = ["127.0.0.0/8"]
[[route]]
domain = "*"
host = "127.0.0.1:${sink.port}"
[queue]
retry = ["1h"]
segment_size = "256KiB"
`,
  });
  const s = sink;
  const seen = new Map<string, number>();
  let scanned = 0;
  const scan = (): void => {
    for (; scanned < s.transactions.length; scanned++) {
      const text = s.transactions[scanned]?.data.toString('latin1') ?? '';
      const id = /^Message-ID: <(.+)@crash\.test>\r$/m.exec(text)?.[1];
      assert.ok(id, `a delivered message without our Message-ID:\n${text.slice(0, 500)}`);
      seen.set(id, (seen.get(id) ?? 0) + 1);
      // The content arrived whole.
      assert.ok(text.endsWith(`end of ${id}\r\n`), `message ${id} is truncated`);
    }
  };
  const missing = (): string[] => [...tally.acked].filter((id) => !seen.has(id));
  await waitFor(
    () => {
      final?.daemon.queues.flushRetries();
      scan();
      return missing().length === 0;
    },
    'every acknowledged message at the sink',
    30_000,
  ).catch((e: Error) => {
    throw new Error(
      `${e.message}: missing ${missing().length} of ${tally.acked.size}: ${missing().slice(0, 10).join(', ')}`,
    );
  });
  // Let stragglers (accepted but not acknowledged before a kill) arrive, then count.
  await new Promise((r) => setTimeout(r, 500));
  final.daemon.queues.flushRetries();
  await new Promise((r) => setTimeout(r, 500));
  scan();
  const duplicates = [...seen.values()].filter((n) => n > 1).length;
  const unacked = [...seen.keys()].filter((id) => !tally.acked.has(id)).length;
  t.diagnostic(
    `${CYCLES} kills in ${crashMs} ms: ${tally.sent} messages sent, ${tally.acked.size} acknowledged, ` +
      `${tally.acked.size - missing().length} of them found, ${duplicates} duplicates, ` +
      `${unacked} queued without an acknowledgement (cut off before the 250), ${tally.refused} refused`,
  );
  assert.deepEqual(missing(), []);
  assert.equal(duplicates, 0, 'a message was queued twice');
});
