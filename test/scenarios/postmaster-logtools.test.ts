// The log tools a postmaster runs on the queue directory of a real `logmta serve`: `logmta log
// verify` while mail flows (batches being written, segments freed under the scan), after a
// SIGKILL, and on a segment with a flipped byte; `logmta log dump` on the same files. Asserted:
// what the tool prints and exits with, and that it never changed a byte of the queue.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileSizes, runLogmta } from '../support/daemon.js';
import { sendMail } from '../support/inject.js';
import { type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();

/** Small segments, so that a few hundred messages roll and free many of them. */
async function world(): Promise<{ s: Stage; host: CustomerHost; down: CustomerHost }> {
  const host = await scene.customer();
  const down = await scene.customer();
  await host.up();
  const s = await scene.stage({
    toml: `
[smtp]
relay_domains = ["customer.test", "down.test"]
[queue]
segment_size = "16KiB"
[[route]]
domain = "customer.test"
host = "127.0.0.1:${host.port}"
[[route]]
domain = "down.test"
host = "127.0.0.1:${down.port}"
`,
  });
  return { s, host, down };
}

const queueDir = (s: Stage) => join(s.dataDir, 'queue');

/** A digest of every file under the queue directory (names and bytes). */
function digest(dir: string): string {
  const h = createHash('sha256');
  for (const p of [...fileSizes(dir).keys()].sort()) h.update(p).update(readFileSync(p));
  return h.digest('hex');
}

/** Sends until `stop()` says so: one message in four to the host that is down (deferred). */
async function flow(s: Stage, stop: () => boolean): Promise<number> {
  let n = 0;
  while (!stop()) {
    const to = n % 4 === 0 ? `d${n}@down.test` : `c${n}@customer.test`;
    await sendMail(s.port, { from: 'app@sender.test', to: [to], body: `${'z'.repeat(76)}\r\n`.repeat(25) });
    n++;
  }
  return n;
}

describe('logmta log verify and log dump on a real queue', () => {
  test('on a live queue while mail flows, every scan exits 0, says a daemon holds it, and never fails', async () => {
    const { s } = await world();
    let scans = 0;
    const load = flow(s, () => scans >= 12);
    for (; scans < 12; scans++) {
      const r = await runLogmta(['log', 'verify', queueDir(s)]);
      assert.equal(r.code, 0, `scan ${scans}: ${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /^note: a running logmta \(pid \d+\) holds this queue/m);
      assert.equal(r.stderr, '');
    }
    assert.ok((await load) > 0);
    const j = await runLogmta(['log', 'verify', '--json', queueDir(s)]);
    assert.equal(j.code, 0, j.stderr);
    assert.equal((JSON.parse(j.stdout) as { running: { pid: number } }).running.pid, s.daemon.child.pid);
  });

  test('after a SIGKILL, verify and dump of the stopped queue report no running daemon and change nothing', async () => {
    const { s } = await world();
    let stop = false;
    const load = flow(s, () => stop).catch(() => 0); // the kill may cut a transaction
    await s.waitLanes((l) => (l['retry-300s'] ?? 0) >= 20, '20 deferred messages');
    await s.kill('SIGKILL');
    stop = true;
    await load;
    const before = digest(queueDir(s));
    const r = await runLogmta(['log', 'verify', queueDir(s)]);
    assert.ok(r.code === 0 || r.code === 1, `${r.code}: ${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stdout, /running logmta|CORRUPT/);
    for (const lane of readdirSync(join(queueDir(s), 'lanes'))) {
      const seg = join(queueDir(s), 'lanes', lane, readdirSync(join(queueDir(s), 'lanes', lane)).sort()[0]!);
      const d = await runLogmta(['log', 'dump', seg]);
      assert.ok(d.code === 0 || d.code === 1, `dump ${seg}: ${d.code} ${d.stderr}`);
    }
    assert.equal(digest(queueDir(s)), before, 'the tools wrote nothing');
  });

  test('a flipped byte in an older segment: verify exits 2 naming the segment and offset, dump too, nothing is changed', async () => {
    const { s } = await world();
    let stop = false;
    const load = flow(s, () => stop);
    await s.waitLanes((l) => (l['retry-300s'] ?? 0) >= 40, '40 deferred messages');
    stop = true;
    await load;
    await s.kill('SIGTERM');
    const lane = join(queueDir(s), 'lanes', 'retry-300s');
    const segs = readdirSync(lane).sort();
    assert.ok(segs.length >= 2, `several retry segments: ${segs.join(' ')}`);
    const victim = join(lane, segs[0]!);
    const bytes = readFileSync(victim);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0xff;
    writeFileSync(victim, bytes);
    const before = digest(queueDir(s));
    const r = await runLogmta(['log', 'verify', queueDir(s)]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`^CORRUPTION: retry-300s/${segs[0]} at offset \\d+: `, 'm'));
    assert.match(r.stdout, /^result: CORRUPT$/m);
    const d = await runLogmta(['log', 'dump', victim]);
    assert.equal(d.code, 2, d.stdout + d.stderr);
    assert.equal(digest(queueDir(s)), before, 'the tools wrote nothing');
  });
});
