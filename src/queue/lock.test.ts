import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { lockQueueDir } from './lock.js';

const dir = mkdtempSync(join(tmpdir(), 'logmta-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a queue directory held by a live process is refused, naming the owner file', async () => {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' });
  try {
    writeFileSync(join(dir, 'owner.pid'), `${child.pid}\n`);
    assert.throws(
      () => lockQueueDir(dir),
      (e: { code?: string; message?: string }) => {
        return e.code === 'QUEUE_LOCKED' && (e.message ?? '').includes('owner.pid');
      },
    );
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
  // The holder died (a crash): the next start takes the directory over.
  lockQueueDir(dir);
  assert.equal(readFileSync(join(dir, 'owner.pid'), 'utf8').trim(), String(process.pid));
  // Taking it again from the same process is fine (recovery after an in-process restart).
  lockQueueDir(dir);
});
