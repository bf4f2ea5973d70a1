// Power loss for real, bounded: a `logmta serve` whose queue directory is on LazyFS (a FUSE file
// system that forgets unsynced writes, crashes at chosen operations and tears writes on command)
// is loaded over SMTP and has its power cut, cycle after cycle, in the three ways of
// test/support/power-loss.ts; then the queue is drained to a sink. Every acknowledged message
// must be delivered, whole, or — the 5% the sink refuses for good — named in a bounce that reached
// the sender's domain (the same sink); duplicates only across a power cut (a delivery in flight),
// never twice in one run; `log verify` must agree with recovery at every start.
// Skips, with the reason, where LazyFS, /dev/fuse or fusermount3 is missing or LazyFS is not
// built (scripts/lazyfs-build.sh; .ci/run builds it). LAZYFS_CYCLES (default 10) and
// LAZYFS_SEED (default: from the clock, printed) replay or lengthen a run; test/long/lazyfs-power.ts
// is the long version.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { VerifyReport } from '../../src/queue/index.js';
import { scanSegment } from '../../src/queue/log/reader.js';
import { RT_DONE } from '../../src/queue/record/records.js';
import { codeOf, runLogmta, SmtpChat, spawnDaemon, startTestDaemon, waitFor } from '../support/daemon.js';
import { findLazyFs, LazyFsMount, laneSegmentFiles } from '../support/lazyfs.js';
import { relayToml, runPowerLoss } from '../support/power-loss.js';
import { SmtpSink } from '../support/sink.js';

const CYCLES = Number(process.env.LAZYFS_CYCLES ?? 10);
const SEED = Number(process.env.LAZYFS_SEED ?? Date.now() % 1_000_000);
const tool = findLazyFs();

test(`every acknowledged message survives ${CYCLES} power cuts on LazyFS (SIGKILL + lost cache, crashes at chosen operations, torn writes)`, {
  timeout: 240_000,
  skip: 'skip' in tool ? tool.skip : false,
}, async (t) => {
  if ('skip' in tool) return;
  t.diagnostic(`seed ${SEED} (LAZYFS_SEED to replay), ${CYCLES} cycles`);
  const r = await runPowerLoss({
    binary: tool.binary,
    cycles: CYCLES,
    seed: SEED,
    loadMs: [300, 900],
    opTimeoutMs: 3_000,
    refuseRate: 0.05,
    log: (l) => t.diagnostic(l),
  });
  t.diagnostic(
    `${r.cycles} cycles in ${r.durationMs} ms: faults ${JSON.stringify(r.faults)}; ` +
      `${r.attempted} sent, ${r.acknowledged} acknowledged, ${r.delivered} delivered, ${r.bounced} bounced ` +
      `(${r.bouncedAndDelivered} also delivered), ${r.lost} lost, ` +
      `${r.duplicated} duplicated, ${r.deliveredUnacknowledged} delivered unacknowledged; recovery cut ` +
      `${r.tornTails} torn tails and set aside ${r.corruptions} corrupt segments; restart avg ${r.restartMsAvg} ms, max ${r.restartMsMax} ms; ` +
      `${r.sparesAtStarts} spare segment files found by the starts; ${r.cutShortTails} torn tails after cuts that tore no write were batches cut short`,
  );
  assert.deepEqual(
    r.lostIds,
    [],
    `acknowledged messages neither delivered nor bounced (work dir kept: ${r.dir})`,
  );
  // The sink refused some mail for good: their senders got bounces, through the cuts.
  assert.ok(r.bounced > 0, 'no bounce was made');
  assert.deepEqual(r.truncated, [], 'messages delivered truncated');
  assert.deepEqual(r.duplicatedInOneRun, [], 'a message delivered twice by one daemon run');
  assert.deepEqual(r.verifyMismatches, [], 'log verify disagreed with recovery');
  assert.deepEqual(r.unexpectedTornTails, [], 'recovery left stale bytes after the end it appended at');
  assert.deepEqual(
    r.daemonExits.filter((x) => x.includes('LazyFS alive')),
    [],
    'the daemon died while its disk was still there',
  );
  assert.equal(r.finalLive, 0, 'the drained queue still holds messages');
  // Freed segments are kept for reuse (docs/queue-format.md rule 9): the cuts must have met them.
  assert.ok(r.sparesAtStarts > 0, 'no start found a spare segment file: recycling was not exercised');
  assert.equal(r.finalStatus, 'clean');
  assert.ok(r.acknowledged >= CYCLES * 5, `only ${r.acknowledged} messages were acknowledged`);
  // The faults really happened: not every armed one may come in time, but some of each must.
  if (CYCLES >= 3) {
    assert.ok(r.faults.op >= 1, `no operation crash fired: ${JSON.stringify(r.faults)}`);
    assert.ok(r.faults.torn >= 1, `no torn write fired: ${JSON.stringify(r.faults)}`);
  }
});

/** Sends one message of about `size` bytes; true when it got its 250. */
async function send(port: number, id: string, size: number): Promise<boolean> {
  const { chat } = await SmtpChat.open(port);
  try {
    if (codeOf((await chat.ask('EHLO torn.test\r\n'))[0] ?? '') !== '250') return false;
    const r = await chat.ask(`MAIL FROM:<s@torn.test>\r\nRCPT TO:<${id}@far.example>\r\nDATA\r\n`, 3);
    if (!r[2]?.startsWith('354')) return false;
    const filler = `${'z'.repeat(78)}\r\n`.repeat(Math.ceil(size / 80));
    const [end] = await chat.ask(`Message-ID: <${id}@torn.test>\r\nSubject: ${id}\r\n\r\n${filler}.\r\n`);
    return end?.startsWith('250 ') ?? false;
  } catch {
    return false;
  } finally {
    chat.close();
  }
}

test('a torn write whose later half reached the disk is cut before the next start appends anything (LazyFS)', {
  timeout: 120_000,
  skip: 'skip' in tool ? tool.skip : false,
}, async () => {
  if ('skip' in tool) return;
  const dir = mkdtempSync('/tmp/lzt');
  const fsDirs = { binary: tool.binary, root: join(dir, 'r'), mnt: join(dir, 'm'), work: join(dir, 'w') };
  const queue = join(fsDirs.mnt, 'q');
  const onDisk = join(fsDirs.root, 'q');
  // Nothing is delivered until the end (a dead route): only accepts and moves write to `new`.
  const dead = relayToml('127.0.0.1:1', queue, '1h', '1MiB');
  let mount = await LazyFsMount.mount(fsDirs);
  const sink = await SmtpSink.start({ pipelining: true });
  try {
    let d = await spawnDaemon({ dir, toml: dead });
    const acked: string[] = [];
    let seg = '';
    const dones = (): number => {
      let n = 0;
      scanSegment(readFileSync(seg), true, (r) => {
        if (r.type === RT_DONE) n++;
      });
      return n;
    };
    // FUSE hands LazyFS a write in pieces that end at 4 KiB page boundaries, and the torn write
    // is the first piece: send messages until the durable end leaves at least 3,000 bytes
    // before the next boundary, so that the hole and the stale bytes are each over 1,400.
    let synced = 0;
    for (let i = 0; i < 5 || 4096 - (synced % 4096) < 3000; i++) {
      assert.ok(i < 40, 'no good alignment after 40 messages');
      assert.ok(await send(d.port, `before${i}`, 100 + 97 * i));
      acked.push(`before${i}`);
      seg ||= (await laneSegmentFiles(onDisk, 'new'))[0] ?? '';
      // Each first attempt failed and moved its message to the retry lane: a Done in `new`.
      await waitFor(() => dones() === acked.length, 'the moves to be durable', 20_000);
      synced = readFileSync(seg).length;
    }
    // The next write to the segment (the accept of a 40 KB message) is torn: the first half of
    // its first piece never reaches the disk, the second half does, then LazyFS dies.
    await mount.tornWrite(seg, 2, [2]);
    assert.equal(await send(d.port, 'torn', 40_000), false, 'the torn message was acknowledged');
    await mount.exited;
    d.kill('SIGKILL');
    await d.exited;
    await mount.unmount();
    const torn = readFileSync(seg);
    assert.ok(
      torn.length >= synced + 3000,
      `the second half of the write reached the disk (${torn.length - synced} bytes)`,
    );
    assert.ok(
      torn.subarray(synced, synced + 1400).every((b) => b === 0),
      'a hole where the first half was',
    );
    assert.ok(
      torn.subarray(torn.length - 1400).some((b) => b !== 0),
      'then stale bytes',
    );

    mount = await LazyFsMount.mount(fsDirs);
    // verify and recovery agree: a torn tail at the end of the synced records.
    const v = await runLogmta(['log', 'verify', '--json', queue]);
    assert.equal(v.code, 1, v.stdout);
    const report = JSON.parse(v.stdout) as VerifyReport;
    const segName = `new/${seg.split('/').at(-1)}`;
    assert.deepEqual(report.lanes.find((l) => l.name === 'new')!.tornTails, [
      { segment: segName, offset: synced, bytes: torn.length - synced },
    ]);
    d = await spawnDaemon({ dir, toml: dead });
    const recovered = (): string | undefined =>
      d
        .stdout()
        .split('\n')
        .find((l) => l.includes('"recovered queue"'));
    await waitFor(() => recovered() !== undefined, 'the recovery report', 10_000);
    const rec = JSON.parse(recovered()!) as { tornTails: number };
    assert.equal(rec.tornTails, 1);
    assert.equal(readFileSync(seg).length, synced, 'recovery cut the segment back to its last good record');
    // A small message after the cut, then a power cut once its move is durable.
    assert.ok(await send(d.port, 'after', 200));
    acked.push('after');
    await waitFor(() => dones() === acked.length, 'the move of the new message to be durable', 20_000);
    d.kill('SIGKILL');
    await d.exited;
    await mount.clearCache();
    await mount.unmount();
    // What the daemon appended ends the file: no stale byte of the torn write after it.
    const after = readFileSync(seg);
    const scan = scanSegment(after, true, () => {});
    assert.equal(scan.tornAt, undefined);
    assert.equal(scan.end, after.length, 'bytes recovery never validated follow the end of the log');

    // Everything acknowledged is delivered, once.
    mount = await LazyFsMount.mount(fsDirs);
    const clean = await runLogmta(['log', 'verify', queue]);
    assert.equal(clean.code, 0, clean.stdout);
    const final = await startTestDaemon({
      dir,
      keepDir: true,
      toml: relayToml(`127.0.0.1:${sink.port}`, queue, '1h', '1MiB'),
    });
    try {
      final.daemon.queues.flushRetries();
      await sink.waitForTransactions(acked.length);
      const ids = sink.transactions.map(
        (t) => /^Message-ID: <(.+)@torn\.test>\r$/m.exec(t.data.toString('latin1'))?.[1],
      );
      assert.deepEqual([...ids].sort(), [...acked].sort());
      assert.deepEqual(final.daemon.queues.recovery[0]!.tornTails, []);
    } finally {
      await final.stop();
    }
  } finally {
    await mount.unmount();
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
