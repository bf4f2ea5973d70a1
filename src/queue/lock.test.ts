// The queue directory lock with real processes: a live holder refuses, a dead one (SIGKILL)
// frees it at once, and processes that try at the same moment never both win.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { lockQueueDir, lockQueueDirWaiting } from './lock.js';

const LOCK_JS = fileURLToPath(new URL('./lock.js', import.meta.url));
const TRIALS = Number(process.env.LOGMTA_LOCK_TRIALS ?? 100);
const dir = mkdtempSync(join(tmpdir(), 'logmta-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `body` (an ES module script with `lockQueueDir` in scope) in a child process. */
function child(body: string, args: string[] = []) {
  const script = `import { lockQueueDir } from ${JSON.stringify(LOCK_JS)};\n${body}`;
  const c = spawn(process.execPath, ['--input-type=module', '-e', script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let out = '';
  c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<void>((r) => c.once('exit', () => r()));
  return { c, out: () => out, exited };
}

describe('waiting for the lock of a daemon on its way out', () => {
  test('a holder that said it stops is waited for (the wait is told once); the lock is ours when it lets go', async () => {
    const d = join(dir, 'stopping');
    const old = lockQueueDir(d);
    old.markStopping();
    const waits: (number | undefined)[] = [];
    const next = lockQueueDirWaiting(d, {
      holderAnswers: async () => true,
      onWait: (pid) => waits.push(pid),
    });
    await new Promise((r) => setTimeout(r, 100));
    old.release();
    const lock = await next;
    assert.deepEqual(waits, [process.pid]);
    lock.release();
  });

  test('a holder that answers and does not say it stops is a running daemon: QUEUE_LOCKED after answeringMs', async () => {
    const d = join(dir, 'running');
    const held = lockQueueDir(d);
    const t0 = Date.now();
    await assert.rejects(
      lockQueueDirWaiting(d, { holderAnswers: async () => true, answeringMs: 200, onWait: () => {} }),
      { code: 'QUEUE_LOCKED' },
    );
    assert.ok(Date.now() - t0 < 2_000);
    held.release();
  });

  test('a holder that never lets go: QUEUE_LOCKED after timeoutMs', async () => {
    const d = join(dir, 'stuck');
    const held = lockQueueDir(d);
    held.markStopping();
    await assert.rejects(
      lockQueueDirWaiting(d, { holderAnswers: async () => false, timeoutMs: 200, onWait: () => {} }),
      { code: 'QUEUE_LOCKED' },
    );
    held.release();
  });
});

describe('queue directory lock', () => {
  test('a directory locked by a live process is refused, naming it; its death frees the lock at once', async () => {
    const d = join(dir, 'held');
    const holder = child(
      `lockQueueDir(${JSON.stringify(d)}); console.log('locked'); setInterval(() => {}, 1000);`,
    );
    while (!holder.out().includes('locked')) await new Promise((r) => setTimeout(r, 10));
    assert.throws(
      () => lockQueueDir(d),
      (e: { code?: string; message?: string }) =>
        e.code === 'QUEUE_LOCKED' &&
        (e.message ?? '').includes(`process ${holder.c.pid}`) &&
        (e.message ?? '').includes('owner.pid'),
    );
    holder.c.kill('SIGKILL'); // a crash: nothing is cleaned up
    await holder.exited;
    const l = lockQueueDir(d);
    l.release();
  });

  test('the same process cannot take a directory twice; release frees it', () => {
    const d = join(dir, 'twice');
    const l = lockQueueDir(d);
    assert.throws(() => lockQueueDir(d), { code: 'QUEUE_LOCKED' });
    l.release();
    l.release(); // idempotent
    lockQueueDir(d).release();
  });

  test(`processes starting at the same moment never both win (${TRIALS} trials, 4 processes)`, async () => {
    const race = join(dir, 'race');
    mkdirSync(race);
    const PERIOD = 30;
    const t0 = Date.now() + 1500; // after every child has started
    // Each child tries trial i at t0 + i*PERIOD (spinning the last milliseconds, so the tries
    // land within a fraction of a millisecond of each other) and keeps what it won until every
    // child has tried everything, so a late try can never win after an early winner let go.
    const body = `
      const [dir, t0, period, trials] = process.argv.slice(1).map((x, i) => (i === 0 ? x : Number(x)));
      const out = [];
      for (let i = 0; i < trials; i++) {
        const at = t0 + i * period;
        while (Date.now() < at - 3) await new Promise((r) => setTimeout(r, 1));
        while (Date.now() < at) {}
        try {
          lockQueueDir(dir + '/' + i);
          out.push(i);
        } catch (e) {
          if (e.code !== 'QUEUE_LOCKED') throw e;
        }
      }
      // Hold everything until the parent has every child's answer (it closes our stdin).
      console.log(JSON.stringify(out));
      process.stdin.on('end', () => process.exit(0)).resume();`;
    const kids = Array.from({ length: 4 }, () =>
      child(body, [race, String(t0), String(PERIOD), String(TRIALS)]),
    );
    while (!kids.every((k) => k.out().endsWith('\n'))) await new Promise((r) => setTimeout(r, 20));
    for (const k of kids) k.c.stdin.end();
    await Promise.all(kids.map((k) => k.exited));
    const wins = new Array<number>(TRIALS).fill(0);
    for (const k of kids) for (const i of JSON.parse(k.out()) as number[]) wins[i]!++;
    const doubles = wins.flatMap((w, i) => (w > 1 ? [i] : []));
    const none = wins.flatMap((w, i) => (w === 0 ? [i] : []));
    assert.deepEqual(doubles, [], 'trials won by more than one process');
    assert.deepEqual(none, [], 'trials nobody won');
  });
});
