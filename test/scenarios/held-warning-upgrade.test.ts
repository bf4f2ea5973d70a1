// Delay warnings for held mail across an upgrade, as the sender meets them: mail held for ODMR
// domains whose customers never connect is accepted by a real `logmta serve` and its queue is
// rewritten the way a logmta from before the envelope flag byte wrote it (c2600f6: no flag byte,
// test/support/legacy-queue.ts); then today's `logmta serve` starts on that queue with
// queue.delay_warning set. The sender's Maildir (read by Python's email package) gets exactly one
// delay warning per message that asked for NOTIFY=DELAY and was not warned yet — at its deadline,
// or at once when the deadline passed before the upgrade — none for mail the old version warned,
// none for mail already past max_age (only its bounce), and then the bounce at max_age; SIGKILLs
// before and after the warning change none of that.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { maildirMessages, waitFor, waitForMaildir } from '../support/daemon.js';
import { type ReadReport, readReport } from '../support/dsn-python.js';
import { sendMail } from '../support/inject.js';
import { flaggedEnvelopes, rewriteAsPreFlag } from '../support/legacy-queue.js';
import { hasPythonEmail } from '../support/mime-check.js';
import { scenes, type Stage } from './kit.js';

const scene = scenes();
const skip = hasPythonEmail() ? false : 'python3 with its email package is not installed';

/** The sender bob@sender.test's Maildir at the stage. */
const bobBox = (s: Stage) => join(s.dataDir, 'mail', 'bob');
const queueDir = (s: Stage) => join(s.dataDir, 'queue');

/** The reports in bob's Maildir, read by Python's email package, in arrival order. */
async function reports(s: Stage): Promise<ReadReport[]> {
  return Promise.all(maildirMessages(bobBox(s)).map((m) => readReport(Buffer.from(m, 'latin1'))));
}

/** Each report as "action recipient status", sorted. */
async function summary(s: Stage): Promise<string[]> {
  return (await reports(s))
    .map((r) => {
      const g = r.perRecipient[0];
      return `${g?.action} ${g?.['final-recipient']?.replace(/^rfc822; /, '')} ${g?.status}`;
    })
    .sort();
}

/** The daemon's TOML: sender.test delivered to local Maildirs, ODMR accounts as `accounts` says. */
function toml(
  delayWarning: string,
  accounts: Array<{ user: string; domain: string; maxAge: string }>,
): string {
  return [
    `[queue]\ndelay_warning = "${delayWarning}"\n\n[[local]]\ndomain = "sender.test"\n`,
    ...accounts.map(
      (a) =>
        `[[odmr.account]]\nuser = "${a.user}"\npassword = "${a.user}-secret"\ndomains = ["${a.domain}"]\nmax_age = "${a.maxAge}"\n`,
    ),
  ].join('\n');
}

/** One message from bob to `rcpt`, with `notify`. */
async function send(s: Stage, rcpt: string, notify: Array<'DELAY' | 'FAILURE'>): Promise<void> {
  await sendMail(s.port, { from: 'bob@sender.test', to: [{ address: rcpt, notify }] });
}

/**
 * The upgrade: the daemon stops (SIGTERM, as an operator's upgrade does), its queue is rewritten
 * as the old version wrote it, and today's daemon starts on it with `newToml`.
 */
async function upgrade(s: Stage, newToml: string): Promise<void> {
  await s.kill('SIGTERM');
  await rewriteAsPreFlag(queueDir(s));
  assert.equal(await flaggedEnvelopes(queueDir(s)), 0, 'the queue is in the old format');
  s.reconfigure(newToml);
  await s.boot();
}

/**
 * SIGKILLs the daemon and starts it again, then waits until every lane is empty and bob's Maildir
 * holds `n` reports; their summary.
 */
async function killThenSettle(s: Stage, n: number): Promise<string[]> {
  await s.restart('SIGKILL');
  await waitForMaildir(bobBox(s), n, 30_000);
  await s.waitLanes((l) => Object.values(l).every((x) => x === 0), 'an empty queue', 30_000);
  return summary(s);
}

describe('delay warnings for held mail accepted before an upgrade', { skip }, () => {
  test('not yet at its deadline at the upgrade: one warning at delay_warning across SIGKILLs before and after it, then the bounce at max_age', async () => {
    const WARN_S = 8;
    const MAX_S = 18;
    // The old version: it never warned held mail nobody attempted.
    const s = await scene.stage({
      toml: toml('1h', [{ user: 'acme', domain: 'acme.example', maxAge: '1h' }]),
    });
    const t0 = Date.now();
    await send(s, 'x@acme.example', ['DELAY', 'FAILURE']);
    await send(s, 'y@acme.example', ['FAILURE']);
    await s.waitHeld('acme.example', 2);
    await upgrade(s, toml(`${WARN_S}s`, [{ user: 'acme', domain: 'acme.example', maxAge: `${MAX_S}s` }]));
    assert.ok(Date.now() - t0 < WARN_S * 1000, 'the upgrade came before the warning deadline');
    await s.waitHeld('acme.example', 2);
    // Killed before the deadline (so the warning comes from the next run): the old envelope is
    // recovered again, as it was.
    assert.ok(Date.now() - t0 < WARN_S * 1000, 'the SIGKILL came before the warning deadline');
    await s.restart('SIGKILL');
    const [warning] = await waitForMaildir(bobBox(s), 1, 20_000);
    const r = await readReport(Buffer.from(warning!, 'latin1'));
    assert.equal(r.contentType, 'multipart/report');
    assert.deepEqual(r.defects, []);
    const g = r.perRecipient[0]!;
    assert.equal(r.perRecipient.length, 1);
    assert.equal(g.action, 'delayed');
    assert.equal(g['final-recipient'], 'rfc822; x@acme.example');
    assert.equal(g['last-attempt-date'], undefined, 'no attempt was made');
    const until = Date.parse(g['will-retry-until'] ?? '');
    const arrival = Date.parse(r.perMessage['arrival-date'] ?? '');
    assert.ok(Math.abs(until - arrival - MAX_S * 1000) < 5_000, `Will-Retry-Until ${g['will-retry-until']}`);
    assert.ok(Date.now() - t0 >= WARN_S * 1000 - 1_000, 'not before its deadline');
    await s.waitLog('delivered'); // the warning's delivery to bob is committed
    // After the warning went out.
    assert.deepEqual(await killThenSettle(s, 3), [
      'delayed x@acme.example 4.0.0',
      'failed x@acme.example 4.4.7',
      'failed y@acme.example 4.4.7',
    ]);
    assert.equal(maildirMessages(bobBox(s)).length, 3, 'exactly one warning');
  });

  test('at the upgrade: warned by the old version, not again; past its deadline, warned at once; past max_age, bounced only', async () => {
    const acme = (maxAge: string) => ({ user: 'acme', domain: 'acme.example', maxAge });
    const globex = (maxAge: string) => ({ user: 'globex', domain: 'globex.example', maxAge });
    // The old version, with delay_warning = 2s: x1 is warned (an old version warned at an attempt;
    // either way its envelope says `warned`).
    const s = await scene.stage({ toml: toml('2s', [acme('1h'), globex('1h')]) });
    await send(s, 'x1@acme.example', ['DELAY', 'FAILURE']);
    await waitForMaildir(bobBox(s), 1, 20_000);
    await s.waitLog('delivered');
    // Still the old version, its delay_warning raised: x2 and g get no warning there.
    await s.kill('SIGTERM');
    s.reconfigure(toml('1h', [acme('1h'), globex('1h')]));
    await s.boot();
    const t2 = Date.now();
    await send(s, 'x2@acme.example', ['DELAY', 'FAILURE']);
    await send(s, 'g@globex.example', ['DELAY', 'FAILURE']);
    await s.waitHeld('acme.example', 2);
    await s.waitHeld('globex.example', 1);
    // The upgrade once x2 is past a 2s deadline; g is past globex's new max_age of 1s.
    await waitFor(() => Date.now() - t2 > 2_500, 'x2 past its warning deadline', 10_000);
    await upgrade(s, toml('2s', [acme('14s'), globex('1s')]));
    await waitForMaildir(bobBox(s), 3, 20_000); // x2's warning and g's bounce
    await s.waitLanes((l) => (l['held-globex.example'] ?? 0) === 0, 'g bounced');
    await waitFor(
      () => s.logLines().filter((l) => l.msg === 'delivered' && l.rcpt === 'bob@sender.test').length >= 2,
      'both reports delivered to bob',
      20_000,
    );
    assert.deepEqual(await killThenSettle(s, 5), [
      'delayed x1@acme.example 4.0.0',
      'delayed x2@acme.example 4.0.0',
      'failed g@globex.example 4.4.7',
      'failed x1@acme.example 4.4.7',
      'failed x2@acme.example 4.4.7',
    ]);
  });
});
