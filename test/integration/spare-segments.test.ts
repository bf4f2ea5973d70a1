// Spare segments as a postmaster meets them: a real `logmta serve` relaying to a sink, with
// small segments so that delivered mail frees segments within the test. Their files are kept
// under <queue>/spare/ and reused as new segments (seen from outside: a segment file born before
// the segments ahead of it). Then a SIGKILL, a restart and more mail. What the customer must end
// up with: every accepted message delivered exactly once, whole, whatever files the queue reused.
// Power cuts with spares in play are test/crash/lazyfs-power.test.ts's.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeTempDir, runLogmta, spawnDaemon, type SpawnedDaemon } from '../support/daemon.js';
import { sendMail } from '../support/inject.js';
import { relayToml } from '../support/power-loss.js';
import { SmtpSink } from '../support/sink.js';
import { waitFor } from '../support/wait.js';

const cleanup: Array<() => unknown> = [];
after(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const body = (i: number) => `message ${i}\r\n${'spare segment test line\r\n'.repeat(40)}`;

async function sendRange(d: SpawnedDaemon, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++)
    await sendMail(d.port, {
      from: 'a@sender.test',
      to: [`r${i}@far.test`],
      subject: `n${i}`,
      body: body(i),
    });
}

/** Messages the daemon still holds, from `logmta queue summary`. */
async function queued(d: SpawnedDaemon): Promise<number> {
  const r = await runLogmta(['queue', 'summary', '--json', '--config', d.configFile!]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { total: { total: number } }).total.total;
}

function recoveredSpares(d: SpawnedDaemon): number | undefined {
  const line = d
    .stdout()
    .split('\n')
    .find((l) => l.includes('"recovered queue"'));
  return line ? (JSON.parse(line) as { spares: number }).spares : undefined;
}

/**
 * Watches a lane directory and notes each segment file's birth time. Segments are created in
 * sequence order, so a new file is never older than a segment before it; a reused file (a freed
 * segment's, renamed) is. Inode numbers would not do: the file system reuses those of unlinked
 * files.
 */
function watchBirths(laneDir: string): { stop: () => void; reused: () => number } {
  const born = new Map<string, number>();
  const look = () => {
    for (const n of existsSync(laneDir) ? readdirSync(laneDir) : []) {
      if (born.has(n)) continue;
      try {
        born.set(n, statSync(join(laneDir, n)).birthtimeMs);
      } catch {
        // gone between readdir and stat
      }
    }
  };
  const timer = setInterval(look, 5);
  return {
    stop: () => clearInterval(timer),
    reused: () => {
      let newest = 0;
      let older = 0;
      for (const [, t] of [...born].sort(([a], [b]) => a.localeCompare(b))) {
        if (t < newest) older++;
        newest = Math.max(newest, t);
      }
      return older;
    },
  };
}

test('freed segments are reused as new ones across a SIGKILL; every message is delivered once, whole', async (t) => {
  const probe = makeTempDir();
  writeFileSync(join(probe, 'f'), '');
  const birth = statSync(join(probe, 'f')).birthtimeMs;
  rmSync(probe, { recursive: true, force: true });
  if (!(birth > 0)) return void t.skip("the temporary directory's file system does not report birth times");
  const sink = await SmtpSink.start({});
  cleanup.push(() => sink.close());
  const dir = makeTempDir();
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  const queueDir = join(dir, 'queue');
  const toml = relayToml(`127.0.0.1:${sink.port}`, queueDir, '1s', '16KiB');
  let d = await spawnDaemon({ dir, toml });
  cleanup.push(() => d.stop(2_000));
  const watch = watchBirths(join(queueDir, 'lanes', 'new'));
  cleanup.push(() => watch.stop());
  await sendRange(d, 0, 150);
  await waitFor(() => sink.transactions.length >= 150, '150 messages delivered', 30_000);
  // Their outcomes durable too, so that the SIGKILL below repeats no delivery.
  await waitFor(async () => (await queued(d)) === 0, 'the queue empty', 30_000);
  watch.stop();
  // 150 messages of ~1.5 KiB fill some 15 segments of 16 KiB, freed as their mail goes out.
  assert.ok(watch.reused() > 0, 'no segment file older than the segments before it: none was reused');
  const spareDir = join(queueDir, 'spare');
  assert.ok(existsSync(spareDir), 'spare/ made');
  assert.ok(readdirSync(spareDir).length <= 4, `at most 4 spares: ${readdirSync(spareDir)}`);
  d.kill('SIGKILL');
  await d.exited;
  d = await spawnDaemon({ dir, toml });
  await waitFor(() => recoveredSpares(d) !== undefined, 'the recovery report');
  await sendRange(d, 150, 250);
  await waitFor(() => sink.transactions.length >= 250, '250 messages delivered', 30_000);
  const seen = new Map<number, number>();
  for (const t of sink.transactions) {
    const m = /^Subject: n(\d+)\r$/m.exec(t.data.toString());
    assert.ok(m, 'a delivered message has its subject');
    const i = Number(m[1]);
    assert.ok(t.data.toString().includes(body(i)), `message ${i} delivered whole`);
    seen.set(i, (seen.get(i) ?? 0) + 1);
  }
  for (let i = 0; i < 250; i++) assert.equal(seen.get(i), 1, `message ${i} delivered once`);
  // The queue's lane holds only its current segments: the freed ones went to spare/ or away.
  const lane = readdirSync(join(queueDir, 'lanes', 'new'));
  assert.ok(lane.length <= 3, `lanes/new holds ${lane.length} segments`);
});
