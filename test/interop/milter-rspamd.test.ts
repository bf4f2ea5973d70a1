// logmta with a real rspamd (Debian's package) as its milter: rspamd's proxy worker in milter
// mode, on a unix socket, with a minimal local configuration (test/support/rspamd.ts). What the
// sender sees at the final dot and what ends up in the mailbox or the queue:
// reject (GTUBE) → 554 5.7.1 and nothing queued; add-header → delivered with X-Spam: Yes; soft
// reject → 451 4.7.1; edits → headers, sender and recipients changed before the queue;
// quarantine → accepted into the hold lane; discard → 250 and nothing delivered.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  maildirMessages,
  startTestDaemon,
  type TestDaemon,
  waitFor,
  waitForMaildir,
} from '../support/daemon.js';
import { sendMessage } from '../support/mail.js';
import {
  RSPAMD_GTUBE_ADD_HEADER,
  RSPAMD_GTUBE_REJECT,
  type Rspamd,
  rspamdMissing,
  startRspamd,
} from '../support/rspamd.js';

const skip = rspamdMissing();

const message = (subject: string, body = 'Hello there.', extra = '') =>
  `From: Alice <alice@sender.example>\r\nTo: bob@local.test\r\nSubject: ${subject}\r\n` +
  `Message-ID: <${Math.random().toString(36).slice(2)}@sender.example>\r\n${extra}\r\n${body}\r\n`;

describe('milter: rspamd', { skip }, () => {
  let rspamd: Rspamd;
  let d: TestDaemon;
  const box = (user: string) => join(d.dataDir, 'mail', user);
  const queued = () => d.daemon.queues.listPieces({}, Date.now());
  /** Queued messages for recipient `a` (another test's delivery may still be committing). */
  const queuedFor = async (a: string) =>
    (await queued()).filter((m) => m.pieces.some((p) => p.recipients.some((x) => x.address === a)));
  const queueEmpty = () => waitFor(async () => (await queued()).length === 0, 'an empty queue');

  before(async () => {
    rspamd = await startRspamd();
    d = await startTestDaemon({
      toml: `
[[local]]
domain = "local.test"
maildir = "mail/{user}"
[[milter]]
name = "rspamd"
address = "${rspamd.address}"
default_action = "tempfail"
`,
    });
  });
  after(async () => {
    await d?.stop();
    await rspamd?.stop();
  });

  test('a clean message is accepted and delivered as sent', async () => {
    const r = await sendMessage(d.port, {
      from: 'alice@sender.example',
      to: ['clean@local.test'],
      message: message('clean'),
    });
    assert.match(r.final ?? '', /^250 2\.0\.0 /, JSON.stringify(r));
    const [m] = await waitForMaildir(box('clean'));
    assert.match(m ?? '', /\nSubject: clean\n/);
    assert.doesNotMatch(m ?? '', /X-Spam:/);
  });

  test("GTUBE is rejected at the final dot with rspamd's 554 5.7.1, and nothing is queued", async () => {
    const r = await sendMessage(d.port, {
      from: 'alice@sender.example',
      to: ['spam@local.test'],
      message: message('offer', RSPAMD_GTUBE_REJECT),
    });
    assert.match(r.final ?? '', /^554 5\.7\.1 /, JSON.stringify(r));
    assert.deepEqual(await queuedFor('spam@local.test'), [], 'no copy');
    assert.deepEqual(await queuedFor('alice@sender.example'), [], 'no bounce');
    assert.deepEqual(maildirMessages(box('spam')), []);
  });

  test('the add-header action delivers the message with X-Spam: Yes', async () => {
    const r = await sendMessage(d.port, {
      from: 'alice@sender.example',
      to: ['marked@local.test'],
      message: message('maybe', RSPAMD_GTUBE_ADD_HEADER),
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    const [m] = await waitForMaildir(box('marked'));
    assert.match(m ?? '', /\nX-Spam: Yes\n/);
    assert.match(m ?? '', /\nSubject: maybe\n/);
  });

  test("a soft reject is a 451 4.7.1 with rspamd's text; the client keeps the message", async () => {
    const r = await sendMessage(d.port, {
      from: 'alice@sender.example',
      to: ['later@local.test'],
      message: message('LOGMTA-SOFT'),
    });
    assert.match(r.final ?? '', /^451 4\.7\.1 greylisted by the test/, JSON.stringify(r));
    assert.deepEqual(await queuedFor('later@local.test'), []);
  });

  test('milter edits are applied before the queue: headers, sender and recipients', async () => {
    const r = await sendMessage(d.port, {
      from: 'alice@sender.example',
      to: ['kept@local.test', 'removed@local.test'],
      message: message('LOGMTA-EDIT', 'edited', 'X-Remove-Me: please\r\n'),
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    const [kept] = await waitForMaildir(box('kept'));
    const [added] = await waitForMaildir(box('added'));
    const noDeliveredTo = (m: string | undefined) => (m ?? '').replace(/\nDelivered-To: [^\n]*/, '');
    assert.equal(noDeliveredTo(kept), noDeliveredTo(added), 'the added recipient got the same message');
    assert.match(kept ?? '', /^Return-Path: <changed@sender\.example>\n/);
    assert.match(kept ?? '', /\nX-Test-Added: added by rspamd\n/);
    assert.match(
      kept ?? '',
      /^Return-Path: [^\n]*\nDelivered-To: [^\n]*\nX-Test-Top: inserted at the top\nReceived: /,
    );
    assert.doesNotMatch(kept ?? '', /X-Remove-Me/);
    await queueEmpty();
    assert.deepEqual(maildirMessages(box('removed')), []);
  });

  test('a quarantine is accepted with 250 and waits in the hold lane with its reason', async () => {
    const r = await sendMessage(d.port, {
      from: 'alice@sender.example',
      to: ['review@local.test'],
      message: message('LOGMTA-QUARANTINE'),
    });
    assert.match(r.final ?? '', /^250 2\.0\.0 /, JSON.stringify(r));
    const held = await d.daemon.queues.listPieces({ lane: 'hold' }, Date.now());
    assert.equal(held.length, 1);
    assert.match(held[0]?.client?.quarantine ?? '', /^milter rspamd: Spam message quarantined/);
    assert.deepEqual(maildirMessages(box('review')), [], 'held, not delivered');
  });

  test('a discard answers 250 and nothing is delivered or queued', async () => {
    const r = await sendMessage(d.port, {
      from: 'alice@sender.example',
      to: ['void@local.test'],
      message: message('LOGMTA-DISCARD'),
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    const all = await queued();
    assert.ok(
      all.every((m) => m.pieces.every((p) => p.lane === 'hold')),
      'only the quarantined message',
    );
    assert.deepEqual(maildirMessages(box('void')), []);
  });
});
