// Delay warnings for held mail that nobody attempts, as the sender meets them: a real `logmta
// serve` holds mail for an ETRN domain whose customer host is down and never sends ETRN, and for
// an ODMR domain whose customer never connects. After queue.delay_warning the sender's mailbox
// (a local Maildir) gets one delay warning per message that asked for NOTIFY=DELAY — read by
// Python's email package — and none for NOTIFY=NEVER, NOTIFY without DELAY, the default or the
// null sender; the daemon is SIGKILLed before the deadline and again once the warnings are
// delivered, and still there is exactly one each. Then the customer comes up (ETRN) or connects
// (ATRN) and gets each message exactly once. Warned mail still bounces at the domain's max_age;
// delay_warning = 0 sends none.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { maildirMessages, waitFor, waitForMaildir } from '../support/daemon.js';
import { type ReadReport, readReport } from '../support/dsn-python.js';
import { sendMail } from '../support/inject.js';
import { hasPythonEmail } from '../support/mime-check.js';
import { atrn, scenes, type Stage } from './kit.js';

const scene = scenes();
const skip = hasPythonEmail() ? false : 'python3 with its email package is not installed';

const WARN_S = 4;

/** The sender bob@sender.test's Maildir at the stage. */
const bobBox = (s: Stage) => join(s.dataDir, 'mail', 'bob');

/** The reports in bob's Maildir, read by Python's email package. */
async function reports(s: Stage): Promise<ReadReport[]> {
  return Promise.all(maildirMessages(bobBox(s)).map((m) => readReport(Buffer.from(m, 'latin1'))));
}

/** Checks a report is one RFC 3464 delay warning about `rcpt`, promising `maxAgeMs` after arrival. */
function assertWarning(r: ReadReport, rcpt: string, maxAgeMs: number): void {
  assert.equal(r.contentType, 'multipart/report');
  assert.equal(r.reportType, 'delivery-status');
  assert.ok(r.parts.includes('message/delivery-status'), r.parts.join(', '));
  assert.deepEqual(r.defects, []);
  assert.equal(r.perRecipient.length, 1);
  const g = r.perRecipient[0]!;
  assert.equal(g.action, 'delayed');
  assert.equal(g['final-recipient'], `rfc822; ${rcpt}`);
  assert.match(g.status ?? '', /^4\./);
  // The warning is no attempt: it claims none was made at the time it was written.
  assert.equal(g['last-attempt-date'], undefined, 'a warning made without an attempt has no Last-Attempt-Date');
  const until = Date.parse(g['will-retry-until'] ?? '');
  const arrival = Date.parse(r.perMessage['arrival-date'] ?? '');
  assert.ok(
    Math.abs(until - arrival - maxAgeMs) < 5_000,
    `Will-Retry-Until ${g['will-retry-until']}, arrival ${r.perMessage['arrival-date']}`,
  );
}

/** The recipient a report is about. */
const about = (r: ReadReport) => r.perRecipient[0]?.['final-recipient']?.replace(/^rfc822; /, '');

/** Waits until this run logged `n` delay warnings and the warnings' deliveries to bob are committed. */
async function warningsDelivered(s: Stage, n: number): Promise<void> {
  await s.waitLog('delay warning', n, 20_000);
  await waitFor(
    () => s.logLines().filter((l) => l.msg === 'delivered' && l.rcpt === 'bob@sender.test').length >= n,
    `${n} warning(s) delivered to bob`,
    20_000,
  );
}

/** Mail for `domain` in every NOTIFY flavour; the DELAY ones are returned. */
async function sendAll(s: Stage, domain: string): Promise<string[]> {
  const wants = [`a@${domain}`, `b@${domain}`];
  await sendMail(s.port, {
    from: 'bob@sender.test',
    to: [{ address: wants[0]!, notify: ['DELAY', 'FAILURE'] }],
  });
  await sendMail(s.port, { from: 'bob@sender.test', to: [{ address: wants[1]!, notify: ['DELAY'] }] });
  await sendMail(s.port, { from: 'bob@sender.test', to: [{ address: `c@${domain}`, notify: ['FAILURE'] }] });
  await sendMail(s.port, { from: 'bob@sender.test', to: [{ address: `d@${domain}`, notify: ['NEVER'] }] });
  await sendMail(s.port, { from: 'bob@sender.test', to: [`e@${domain}`] });
  await sendMail(s.port, { from: '', to: [{ address: `f@${domain}`, notify: ['DELAY'] }] });
  return wants;
}

const ALL = ['a', 'b', 'c', 'd', 'e', 'f'];

/** A daemon that delivers sender.test to local Maildirs and holds mail as `held` (TOML) says. */
function stage(delayWarning: string, held: string): Promise<Stage> {
  return scene.stage({
    toml: `[queue]\ndelay_warning = "${delayWarning}"\n\n[[local]]\ndomain = "sender.test"\n${held}`,
  });
}

/** The ODMR account acme, collecting acme.example, whose mail gives up after `maxAge`. */
const acme = (maxAge: string) =>
  `[[odmr.account]]\nuser = "acme"\npassword = "acme-secret"\ndomains = ["acme.example"]\nmax_age = "${maxAge}"\n`;

/** One message from bob to x@acme.example asking for DELAY and FAILURE. */
async function sendToAcme(s: Stage): Promise<void> {
  await sendMail(s.port, {
    from: 'bob@sender.test',
    to: [{ address: 'x@acme.example', notify: ['DELAY', 'FAILURE'] }],
  });
}

/** Waits until every lane of the daemon's queue is empty. */
const drained = (s: Stage) =>
  s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue', 20_000);

/** The Action of each report in bob's Maildir, in arrival order. */
const actions = async (s: Stage) => (await reports(s)).map((r) => r.perRecipient[0]?.action);

/**
 * The common part: mail held, a SIGKILL before the warning deadline, the warnings after the
 * restart, a SIGKILL once they are delivered, a restart that sends none again.
 */
async function warnAcrossKills(s: Stage, domain: string, maxAgeMs: number): Promise<void> {
  const t0 = Date.now();
  const wants = await sendAll(s, domain);
  await s.waitHeld(domain, ALL.length);
  assert.ok(Date.now() - t0 < WARN_S * 1000, 'the mail was held before its warning deadline');
  assert.equal(s.logLines().filter((l) => l.msg === 'delay warning').length, 0);
  await s.restart('SIGKILL'); // between arrival and the deadline
  await warningsDelivered(s, wants.length);
  await s.restart('SIGKILL'); // after the warnings went out
  await s.waitHeld(domain, ALL.length);
  const got = await reports(s);
  assert.equal(got.length, wants.length, 'one warning per message that asked for DELAY');
  for (const r of got) assertWarning(r, about(r) ?? '?', maxAgeMs);
  assert.deepEqual(got.map(about).sort(), wants);
}

describe('delay warnings for held mail nobody attempts', { skip }, () => {
  test('an ETRN domain whose host is down and never sends ETRN: one warning each across two SIGKILLs, then ETRN delivers each once', async () => {
    const host = await scene.customer(); // down
    const s = await stage(
      `${WARN_S}s`,
      `[[etrn]]\ndomain = "branch.example"\nhost = "127.0.0.1:${host.port}"\nprobe_interval = "1h"\nmax_age = "2h"\n`,
    );
    await warnAcrossKills(s, 'branch.example', 2 * 3600_000);
    await host.up();
    assert.match(await s.etrn('branch.example'), /^253 /);
    await host.waitFor(ALL.length, 'the held mail at the customer');
    await drained(s);
    assert.deepEqual(
      host.recipients().sort(),
      ALL.map((x) => `${x}@branch.example`),
      'each message once',
    );
    assert.equal(maildirMessages(bobBox(s)).length, 2, 'no warning again after the restarts');
    assert.equal(s.logLines().filter((l) => l.msg === 'delay warning').length, 0);
  });

  test('an ODMR domain whose customer never connects: one warning each across two SIGKILLs, then ATRN brings each once', async () => {
    const s = await stage(`${WARN_S}s`, acme('3h'));
    await warnAcrossKills(s, 'acme.example', 3 * 3600_000);
    const session = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme.example']);
    assert.match(session.reply, /^250 /);
    await session.done;
    assert.deepEqual(
      session.received.flatMap((t) => t.recipients).sort(),
      ALL.map((x) => `${x}@acme.example`),
      'each message once',
    );
    await drained(s);
    assert.equal(maildirMessages(bobBox(s)).length, 2, 'no warning again after the restarts');
  });

  test('warned held mail still bounces at the domain max_age: one warning, then one bounce', async () => {
    const s = await stage('2s', acme('6s'));
    await sendToAcme(s);
    const [warning] = await waitForMaildir(bobBox(s), 1, 15_000);
    assertWarning(await readReport(Buffer.from(warning!, 'latin1')), 'x@acme.example', 6_000);
    await s.waitHeld('acme.example', 1); // warned, still held
    await waitForMaildir(bobBox(s), 2, 20_000);
    await drained(s);
    assert.deepEqual(await actions(s), ['delayed', 'failed']);
    assert.equal((await reports(s))[1]!.perRecipient[0]!.status, '4.4.7');
  });

  test('delay_warning = 0: no warning, only the bounce at max_age', async () => {
    const s = await stage('0s', acme('4s'));
    await sendToAcme(s);
    await waitForMaildir(bobBox(s), 1, 20_000);
    await drained(s);
    assert.deepEqual(await actions(s), ['failed']);
    assert.equal(s.logLines().filter((l) => l.msg === 'delay warning').length, 0);
  });
});
