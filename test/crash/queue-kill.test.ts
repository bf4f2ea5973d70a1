// Process-crash test of the queue on the real file system: a child (queue-child.ts) accepts
// messages from 32 concurrent producers and prints each id as soon as accept() resolves; we
// kill it with SIGKILL at random moments, 24 times, restarting it each time (recovery). Then
// every acknowledged id must be in the recovered queue with its recipients and exact bytes,
// and no message (acknowledged or not) may be corrupt. SIGKILL keeps the page cache, so this
// is the process-crash path; power loss is covered by src/queue/model.test.ts on MemQueueFs.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { NodeQueueFs } from '../../src/queue/log/fs.js';
import { Queue, internals } from '../../src/queue/queue.js';
import { expectedData, expectedRecipients } from './queue-content.js';

const CHILD = new URL('./queue-child.js', import.meta.url).pathname;
const CYCLES = 24;

interface Cycle {
  acked: number[];
  recovered: { corruptions: unknown[]; missing: unknown[]; live: number } | undefined;
  stderr: string;
  signal: NodeJS.Signals | null;
}

/** Runs the child until it has acknowledged something, then kills it after `delayMs`. */
function cycle(dir: string, delayMs: number): Promise<Cycle> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Cycle = { acked: [], recovered: undefined, stderr: '', signal: null };
    let buf = '';
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (line.startsWith('recovered ')) out.recovered = JSON.parse(line.slice(10));
        else if (line.startsWith('ack ')) {
          out.acked.push(Number(line.slice(4)));
          if (!timer) timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
        }
      }
    });
    child.stderr.on('data', (d) => (out.stderr += String(d)));
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(guard);
      if (timer) clearTimeout(timer);
      out.signal = signal;
      resolve(out);
    });
  });
}

test('every id acknowledged before a SIGKILL is recovered intact, across repeated kills', async () => {
  const dir = fs.mkdtempSync(join(os.tmpdir(), 'logmta-kill-'));
  try {
    const acked = new Set<number>();
    // Deterministic "random" kill delays: 0..~150 ms after the first acknowledgement.
    let seed = 12345;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < CYCLES; i++) {
      const c = await cycle(dir, Math.floor(rand() * 150));
      assert.equal(c.signal, 'SIGKILL', `cycle ${i}: the child must die by our kill (stderr: ${c.stderr})`);
      assert.ok(c.recovered, `cycle ${i}: recovery finished`);
      assert.deepEqual(c.recovered.corruptions, [], `cycle ${i}: a killed process leaves no corruption`);
      assert.deepEqual(
        c.recovered.missing,
        [],
        `cycle ${i}: no segment goes missing ${fs
          .readdirSync(join(dir, 'lanes'))
          .map((l) => `${l}:${fs.readdirSync(join(dir, 'lanes', l)).join(',')}`)
          .join(' ')}`,
      );
      assert.ok(c.recovered.live >= acked.size, `cycle ${i}: nothing acknowledged is lost`);
      for (const id of c.acked) acked.add(id);
    }
    assert.ok(acked.size > CYCLES, `enough messages were acknowledged (${acked.size})`);
    const q = await Queue.open({ dir, fs: new NodeQueueFs(), segmentSize: 64 * 1024 });
    assert.deepEqual(q.recovery!.corruptions, []);
    for (const id of acked) {
      const m = internals(q).core.msgs.byId.get(id);
      assert.ok(m !== undefined, `acknowledged ${id} is queued`);
    }
    // Every message present, acknowledged or not, is whole: its bytes and its recipients.
    for (const [id, m] of internals(q).core.msgs.byId) {
      assert.ok((await q.readData(m, id)).equals(expectedData(id)), `data of ${id}`);
      const pending = new Set<string>();
      for (const p of internals(q).core.piecesOf(m)) {
        const env = await q.readEnvelope(p);
        for (const i of q.pendingOf(p, env)) pending.add(env.info.recipients[i]!.address);
      }
      const want = expectedRecipients(id);
      if (acked.has(id)) assert.deepEqual([...pending].sort(), want.sort(), `recipients of ${id}`);
      else for (const a of pending) assert.ok(want.includes(a), `recipient ${a} of ${id}`);
    }
    await q.stop();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
