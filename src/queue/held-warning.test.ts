// Delay warnings of held (ETRN/ODMR) mail that nobody attempts (expire.ts, outcomes.ts): the
// expiry heap keys such a piece at its warning deadline, the sweep sends one warning and writes
// the piece again without its flag, so that after a crash recovery knows — from the flag byte,
// without reading the envelope — that none is due any more. NOTIFY without DELAY, NEVER and the
// null sender get none and cost no read. Envelopes written before the flag byte existed (a queue
// of an older logmta, upgraded) are judged by recovery from their bytes, unparsed: one not warned
// whose JSON names DELAY gets the deadline, and the sweep reads it there and warns it, once.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { internals, Queue, type QueueOptions } from './queue.js';
import {
  decodeEnvelope,
  ENV_UNFLAGGED,
  ENV_WARN_PENDING,
  encodeEnvelope,
  envelopeFlags,
} from './record/records.js';
import type { RecipientInfo } from './types.js';
import { flaggedEnvelopes, rewriteAsPreFlag, withoutFlagByte } from '../../test/support/legacy-queue.js';
import { MemQueueFs } from '../../test/support/memfs.js';
import { FakeClock } from '../../test/support/clock.js';
import { msg, quiet, recordReports, scripted } from '../../test/support/queue.js';
import { waitFor } from '../../test/support/wait.js';

const D = 'held.test';
const WARN = 10_000;
const MAX_AGE = 60_000;

/** A queue on `fs` (a fresh in-memory disk by default) with the fake clock; reports recorded as text. */
async function open(
  fs = new MemQueueFs(),
  clock = new FakeClock(),
  reports: string[] = [],
  extra: Partial<QueueOptions> = {},
): Promise<{ q: Queue; fs: MemQueueFs; clock: FakeClock; reports: string[] }> {
  const q = await Queue.open({
    dir: '/q',
    fs,
    clock,
    maxAge: MAX_AGE,
    delayWarning: WARN,
    hooks: { reports: recordReports(reports) },
    ...extra,
  });
  return { q, fs, clock, reports };
}

/** Accepts one message held for `domain` (D); `rcpt` says who it is for and what NOTIFY it asked. */
async function hold(q: Queue, rcpt: RecipientInfo, sender = 'a@x.test', domain = D): Promise<number> {
  return (
    await q.accept({
      data: msg(rcpt.address),
      sender,
      recipients: [rcpt],
      destinations: [{ kind: 'held', domain }],
    })
  ).msgId;
}

/** A flush of D that finds the customer away (every recipient deferred, held again), until quiet. */
async function flushAway(q: Queue, clock: FakeClock): Promise<void> {
  q.setDeliverer(scripted(() => ({ rcpt: 0, status: 'deferred', code: 421, text: 'away', hold: D })).deliver);
  await q.flushHeld(D);
  await quiet(q, clock);
}

/** Counts the positional reads of held lanes' envelopes (recovery reads whole segment files instead). */
function countReads(fs: MemQueueFs): { readonly n: number } {
  const c = { n: 0 };
  const read = fs.read.bind(fs);
  fs.read = (path, position, length) => {
    if (path.includes('/lanes/held-')) c.n++;
    return read(path, position, length);
  };
  return c;
}

/** The heap's deadlines of the live pieces, as ages (deadline - arrival), sorted. */
function keyedAt(q: Queue): number[] {
  const core = internals(q).core;
  const out: number[] = [];
  q.expiry.forEach((deadline, slot, gen) => {
    if (core.pieces.gen[slot] === gen && core.isLive(slot))
      out.push(deadline - core.msgs.arrival[core.pieces.msg[slot]!]!);
  });
  return out.sort((a, b) => a - b);
}

const delay = { address: `w@${D}`, notify: ['DELAY', 'FAILURE'] };

describe('delay warnings of held mail nobody attempts', () => {
  test('one warning at delay_warning, none again after a crash, a bounce at max_age', async () => {
    const { q, fs, clock, reports } = await open();
    const id = await hold(q, delay);
    q.start();
    assert.deepEqual(keyedAt(q), [WARN], 'keyed at the warning deadline');
    clock.advance(WARN - 1);
    await quiet(q, clock);
    assert.deepEqual(reports, []);
    clock.advance(1);
    await waitFor(() => reports.length === 1, 'the delay warning');
    assert.match(reports[0]!, /^delay:w@held\.test /);
    await quiet(q, clock);
    assert.deepEqual(keyedAt(q), [MAX_AGE], 'keyed at the expiry once warned');
    const core = internals(q).core;
    const pslot = core.piecesOf(core.msgs.byId.get(id)!)[0]!;
    const env = await q.readEnvelope(pslot);
    assert.equal(env.info.warned, true);
    assert.equal(env.info.attempts, 0, 'a warning is no attempt');
    assert.equal(env.info.history.at(-1)?.ev, 'delay warning sent');
    // Power loss once the warning is durable: the restarted queue knows, from the flag alone.
    await q.stop();
    fs.crash();
    const reads = countReads(fs);
    const again = await open(fs, clock, reports);
    assert.equal(reads.n, 0, 'recovery read no envelope');
    assert.deepEqual(keyedAt(again.q), [MAX_AGE]);
    again.q.start();
    clock.advance(MAX_AGE - WARN - 1);
    await quiet(again.q, clock);
    assert.equal(reads.n, 0, 'nothing was read before the expiry');
    assert.equal(reports.length, 1, 'no second warning');
    clock.advance(1);
    await waitFor(() => reports.length === 2, 'the bounce at max_age');
    assert.match(reports[1]!, /^failure:w@held\.test 4\.4\.7/);
    assert.equal(again.q.heldCount(D), 0);
    await again.q.stop();
  });

  test('a crash before the warning: it comes after the restart, once', async () => {
    const { q, fs, clock, reports } = await open();
    await hold(q, delay);
    q.start();
    clock.advance(WARN / 2);
    await quiet(q, clock);
    await q.stop();
    fs.crash();
    const again = await open(fs, clock, reports);
    again.q.start();
    assert.deepEqual(keyedAt(again.q), [WARN]);
    clock.advance(WARN);
    await waitFor(() => reports.length === 1, 'the warning after the restart');
    await quiet(again.q, clock);
    assert.equal(reports.length, 1);
    await again.q.stop();
  });

  test('NOTIFY without DELAY, NEVER, the default, the null sender: no warning, no read, keyed at the expiry', async () => {
    const { q, fs, clock, reports } = await open();
    await hold(q, { address: `f@${D}`, notify: ['FAILURE'] });
    await hold(q, { address: `n@${D}`, notify: ['NEVER'] });
    await hold(q, { address: `d@${D}` });
    await hold(q, delay, '');
    const reads = countReads(fs);
    q.start();
    assert.deepEqual(keyedAt(q), [MAX_AGE, MAX_AGE, MAX_AGE, MAX_AGE]);
    clock.advance(MAX_AGE - 1);
    await quiet(q, clock);
    assert.deepEqual(reports, []);
    assert.equal(reads.n, 0, 'no envelope was read for a warning nobody wants');
    clock.advance(1);
    await waitFor(() => q.heldCount(D) === 0, 'all four expired');
    assert.deepEqual(reports.map((r: string) => r.split(' ')[0]).sort(), [
      'failure:d@held.test',
      'failure:f@held.test',
    ]);
    await q.stop();
  });

  test('a delay_warning beyond max_age: the bounce only', async () => {
    const { q, clock, reports } = await open(undefined, undefined, [], {
      delayWarning: Number.MAX_SAFE_INTEGER,
    });
    await hold(q, delay);
    q.start();
    assert.deepEqual(keyedAt(q), [MAX_AGE]);
    clock.advance(MAX_AGE);
    await waitFor(() => reports.length === 1, 'the bounce');
    assert.match(reports[0]!, /^failure:/);
    await q.stop();
  });

  test('warned mail is still delivered by a flush, once', async () => {
    const { q, clock, reports } = await open();
    await hold(q, delay);
    q.start();
    clock.advance(WARN);
    await waitFor(() => reports.length === 1, 'the warning');
    const c = scripted(() => 'delivered');
    q.setDeliverer(c.deliver);
    assert.equal(await q.flushHeld(D), 1);
    await quiet(q, clock);
    assert.deepEqual(
      c.seen.map((s) => s.rcpts),
      [[`w@${D}`]],
    );
    assert.equal(q.heldCount(D), 0);
    assert.equal(reports.length, 1);
    await q.stop();
  });

  test('an envelope written with no warning pending is not read for a warning; an attempt still warns it', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const reports: string[] = [];
    const old = await open(fs, clock, reports);
    internals(old.q).core.warnPending = () => false; // its flag byte says: none pending
    await hold(old.q, delay);
    await old.q.stop();
    const reads = countReads(fs);
    const { q } = await open(fs, clock, reports);
    assert.deepEqual(keyedAt(q), [MAX_AGE], 'no warning deadline without the flag');
    q.start();
    clock.advance(WARN);
    await quiet(q, clock);
    assert.equal(reads.n, 0, 'nothing was read at the warning deadline');
    assert.deepEqual(reports, []);
    await flushAway(q, clock); // warns, as it always did
    assert.equal(reports.length, 1);
    assert.match(reports[0]!, /^delay:w@held\.test /);
    await q.stop();
  });
});

describe('held mail of a queue written before the flag byte (an upgrade)', () => {
  /** Stops `q` and rewrites its queue as a logmta from before the flag byte wrote it. */
  async function asPreFlag(q: Queue, fs: MemQueueFs): Promise<void> {
    await q.stop();
    await rewriteAsPreFlag('/q', fs);
    assert.equal(await flaggedEnvelopes('/q', fs), 0, 'no envelope has a flag byte any more');
  }

  test('not yet at its deadline: one warning there, none again after a crash, the bounce at max_age; no read for mail that wants none', async () => {
    const { q: old, fs, clock, reports } = await open();
    await hold(old, delay);
    await hold(old, { address: `f@${D}`, notify: ['FAILURE'] });
    await hold(old, { address: `d@${D}` });
    await hold(old, { address: `z@${D}`, notify: ['DELAY'] }, ''); // the null sender: never warned
    await asPreFlag(old, fs);
    const reads = countReads(fs);
    const { q } = await open(fs, clock, reports);
    assert.equal(reads.n, 0, 'recovery parsed no envelope');
    // DELAY in the JSON, not warned: keyed at the deadline (the null sender's too, decided there).
    assert.deepEqual(keyedAt(q), [WARN, WARN, MAX_AGE, MAX_AGE]);
    q.start();
    clock.advance(WARN - 1);
    await quiet(q, clock);
    assert.deepEqual(reports, []);
    assert.equal(reads.n, 0);
    clock.advance(1);
    await waitFor(() => reports.length === 1, 'the delay warning');
    assert.match(reports[0]!, /^delay:w@held\.test /);
    await quiet(q, clock);
    assert.equal(reads.n, 2, 'only the two envelopes that name DELAY were read');
    assert.deepEqual(keyedAt(q), [MAX_AGE, MAX_AGE, MAX_AGE, MAX_AGE]);
    await q.stop();
    fs.crash();
    // The warned version is written in today's format: no second warning. The null sender's
    // envelope is still the old one, so it is looked at once more, and warned no more than before.
    const again = await open(fs, clock, reports);
    assert.deepEqual(keyedAt(again.q), [WARN, MAX_AGE, MAX_AGE, MAX_AGE]);
    again.q.start();
    clock.advance(MAX_AGE - WARN - 1);
    await quiet(again.q, clock);
    assert.equal(reports.length, 1, 'no second warning');
    clock.advance(1);
    await waitFor(() => again.q.heldCount(D) === 0, 'all four expired');
    assert.deepEqual(reports.map((r: string) => r.split(' ')[0]).sort(), [
      'delay:w@held.test',
      'failure:d@held.test',
      'failure:f@held.test',
      'failure:w@held.test',
    ]);
    await again.q.stop();
  });

  test('past its deadline: warned at once; warned by the old version at an attempt: not again, not read; past max_age: bounced, not warned', async () => {
    const D2 = 'other.test';
    const { q: old, fs, clock, reports } = await open();
    // As the old version: no warning deadlines (nothing flagged), only the expiry sweep.
    internals(old).core.warnPending = () => false;
    old.start();
    await hold(old, { address: `e@${D2}`, notify: ['DELAY', 'FAILURE'] }, 'a@x.test', D2);
    clock.advance(40_000);
    await quiet(old, clock);
    await hold(old, { address: `w1@${D}`, notify: ['DELAY', 'FAILURE'] });
    clock.advance(WARN);
    await flushAway(old, clock); // the old version warned only at such an attempt
    assert.equal(reports.length, 1);
    assert.match(reports[0]!, /^delay:w1@held\.test /);
    await hold(old, { address: `w2@${D}`, notify: ['DELAY'] });
    await asPreFlag(old, fs);
    clock.advance(MAX_AGE - 40_000 - WARN); // e@ is at max_age, w2@ past its deadline
    const reads = countReads(fs);
    const { q } = await open(fs, clock, reports);
    assert.equal(reads.n, 0, 'recovery parsed no envelope');
    assert.deepEqual(keyedAt(q), [WARN, WARN, MAX_AGE], 'w1, warned, keyed at its expiry only');
    q.start();
    await waitFor(() => reports.length === 3, 'the bounce and the late warning');
    await quiet(q, clock);
    assert.deepEqual(
      reports
        .slice(1)
        .map((r: string) => r.split(' ')[0])
        .sort(),
      ['delay:w2@held.test', 'failure:e@other.test'],
    );
    assert.match(reports.find((r) => r.startsWith('failure:'))!, / 4\.4\.7$/);
    assert.equal(reads.n, 2, 'the warned envelope was not read');
    assert.equal(q.heldCount(D), 2);
    await q.stop();
  });

  test('a report policy with no byte test: every unwarned old envelope is looked at, only DELAY is warned', async () => {
    const { q: old, fs, clock, reports } = await open();
    await hold(old, delay);
    await hold(old, { address: `f@${D}`, notify: ['FAILURE'] });
    await asPreFlag(old, fs);
    const policy = recordReports(reports);
    const plain = { wants: policy.wants, build: policy.build }; // no mayWantDelay
    const { q } = await open(fs, clock, reports, { hooks: { reports: plain } });
    assert.deepEqual(keyedAt(q), [WARN, WARN]);
    q.start();
    clock.advance(WARN);
    await waitFor(() => reports.length === 1, 'the warning');
    await quiet(q, clock);
    assert.match(reports[0]!, /^delay:w@held\.test /);
    assert.deepEqual(keyedAt(q), [MAX_AGE, MAX_AGE]);
    await q.stop();
  });
});

describe('the envelope flag byte', () => {
  test('round-trips, and the JSON reads alike with and without it', () => {
    const rec = {
      msgId: 42,
      piece: 0,
      version: 3,
      due: 1,
      arrival: 2,
      rcptCount: 1,
      info: { sender: 'a@x', recipients: [{ address: 'b@y' }], size: 5, attempts: 0, history: [] },
    };
    const plain = encodeEnvelope(rec);
    const flagged = encodeEnvelope(rec, ENV_WARN_PENDING);
    const preFlag = withoutFlagByte(plain); // as a logmta before the flag byte wrote it
    assert.equal(plain[32], 0x20, 'no flag set: a space');
    assert.equal(flagged[32], 0x09, 'warning pending: a TAB');
    assert.equal(preFlag[32], 0x7b, 'before flags: the JSON right after the prefix');
    assert.equal(envelopeFlags(plain), 0);
    assert.equal(envelopeFlags(flagged), ENV_WARN_PENDING);
    assert.equal(envelopeFlags(preFlag), ENV_UNFLAGGED, 'flags unknown');
    assert.equal(flagged.length, plain.length);
    assert.equal(preFlag.length, plain.length - 1);
    assert.deepEqual(decodeEnvelope(flagged), decodeEnvelope(plain));
    assert.deepEqual(decodeEnvelope(preFlag), decodeEnvelope(plain));
    // Any JSON reader (an older logmta) takes the flag byte for whitespace.
    assert.deepEqual(JSON.parse(flagged.toString('utf8', 32)), rec.info);
    assert.deepEqual(JSON.parse(plain.toString('utf8', 32)), rec.info);
  });
});
