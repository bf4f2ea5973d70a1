// The accepted message as its recipient gets it, against a `logmta serve` child process that
// delivers to Maildirs named by domain and user ("{domain}/{user}"): a recipient named several
// times in one transaction, in any case, finds one copy, in the mailbox of its domain; mail for
// postmaster@ a local domain is taken though `users` does not list postmaster (RFC 5321 4.5.1);
// the body arrives byte for byte (dot-stuffing undone, a 998-octet line, bare LF normalised) under
// exactly one Received: header of ours whose fields match the session.
// Fails: naming the mailbox with the wrong number of copies or the header or line that differs.

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { codeOf, maildirMessages, waitFor } from '../support/daemon.js';
import { type ServedSuite, serveSuite } from '../support/served.js';

let srv: ServedSuite;
/** Where the Maildirs are: <dir>/data/mail/<domain>/<user>. */
const mailRoot = (dir: string): string => join(dir, 'data', 'mail');

const toml = (dir: string): string => `
[[local]]
domain = "localhost"
maildir = "${mailRoot(dir)}/{domain}/{user}"
users = ["ann", "ben"]
[[local]]
domain = "other.test"
maildir = "${mailRoot(dir)}/{domain}/{user}"
users = ["ann"]
`;

const codes = (rs: string[]): string[] => rs.map(codeOf);

/** Sends one pipelined transaction; returns the replies after the greeting. */
async function transact(helo: string, rcpts: string[], body: string): Promise<string[]> {
  const chat = await srv.chat();
  const cmds = `EHLO ${helo}\r\nMAIL FROM:<sender@example.org>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`;
  chat.send(cmds);
  const r = await chat.read(3 + rcpts.length);
  chat.send(`${body}.\r\nQUIT\r\n`);
  r.push(...(await chat.read(2)));
  return r;
}

/** The messages in <mail>/<domain>/<user>/new that hold `tag`. */
const copies = (domain: string, user: string, tag: string): string[] =>
  maildirMessages(join(mailRoot(srv.dir), domain, user)).filter((m) => m.includes(tag));

describe('the message as its recipient gets it (logmta serve, Maildir per domain)', () => {
  srv = serveSuite('logmta-delivered-', toml);

  test('a recipient named several times, in any case, gets one copy, in the mailbox of its domain', async () => {
    const r = await transact(
      'dup.test',
      ['ann@localhost', 'ANN@localhost', 'ann@LOCALHOST', 'ann@localhost', 'ben@localhost'],
      'Subject: dup\r\n\r\nX-Tag: dup-1\r\n',
    );
    assert.deepEqual(codes(r), [
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '250 2.1.5',
      '250 2.1.5',
      '250 2.1.5',
      '250 2.1.5',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    await waitFor(() => copies('localhost', 'ben', 'dup-1').length === 1, 'the copy for ben');
    // Every recipient's outcome is logged before the daemon is done with the message. The
    // session keeps ann@localhost, ANN@localhost (another local part, RFC 5321 2.4) and ben: the
    // exact repeat and the one differing only in the domain's case are answered 250, not added.
    await waitFor(
      () => (srv.daemon.stdout().match(/"msg":"delivered"/g) ?? []).length >= 3,
      'three delivered outcomes',
    );
    assert.equal(copies('localhost', 'ann', 'dup-1').length, 1, 'ann@localhost got the message once');
    assert.equal(
      existsSync(join(mailRoot(srv.dir), 'LOCALHOST')),
      false,
      'no mailbox under the upper-case domain',
    );
  });

  test('postmaster@ a local domain is accepted although users does not list it (RFC 5321 4.5.1)', async () => {
    const r = await transact(
      'pm.test',
      ['postmaster@localhost', 'PostMaster@other.test'],
      'Subject: pm\r\n\r\nX-Tag: pm-1\r\n',
    );
    assert.deepEqual(codes(r), [
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '250 2.1.5',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    await waitFor(
      () =>
        copies('localhost', 'postmaster', 'pm-1').length === 1 &&
        copies('other.test', 'postmaster', 'pm-1').length === 1,
      'a copy in each postmaster mailbox',
    );
    assert.deepEqual(readdirSync(mailRoot(srv.dir)).sort(), ['localhost', 'other.test']);
  });

  test('the body arrives byte for byte under one Received: header whose fields match the session', async () => {
    const long = 'L'.repeat(998);
    const body =
      'Subject: exact\r\nX-Tag: exact-1\r\n\r\n' +
      '..leading dot\r\n...\r\n..\r\n. \r\nmid.dle\r\n' +
      `${long}\r\n` +
      'bare\nlf\r\n\r\n\r\ntrailing blank lines above\r\n';
    const before = Date.now();
    const r = await transact('rcv.test', ['ben@localhost'], body);
    const queued = /queued as (\S+)/.exec(r[r.length - 2] ?? '')?.[1];
    assert.ok(queued, `no queue id in ${JSON.stringify(r)}`);
    await waitFor(() => copies('localhost', 'ben', 'exact-1').length === 1, 'the copy for ben');
    const [m = ''] = copies('localhost', 'ben', 'exact-1');
    const [head = '', ...rest] = m.split('\nSubject: exact\n');
    // Maildir lines end in LF; what the client sent after the stuffing dots is the rest.
    assert.equal(
      rest.join(''),
      'X-Tag: exact-1\n\n.leading dot\n..\n.\n \nmid.dle\n' +
        `${long}\n` +
        'bare\nlf\n\n\ntrailing blank lines above\n',
    );
    assert.equal((m.match(/^Received:/gm) ?? []).length, 1, 'exactly one Received: header');
    const received = /^Received: [^\n]*(?:\n\t[^\n]*)*/m.exec(head)?.[0] ?? '';
    assert.match(
      received,
      new RegExp(
        `^Received: from rcv\\.test \\(\\[127\\.0\\.0\\.1\\]\\)\n\tby mx\\.test \\(logmta\\) with ESMTP id ${queued}\n\tfor <ben@localhost>; (.+)$`,
      ),
    );
    const stamp = Date.parse(/; (.+)$/.exec(received)?.[1] ?? '');
    assert.ok(stamp >= before - 1_000 && stamp <= Date.now() + 1_000, `Received: date ${received}`);
    assert.match(head, /^Return-Path: <sender@example\.org>\nDelivered-To: ben@localhost\nReceived: /);
  });

  test('a non-ASCII EHLO name leaves the Received: header ASCII unless the transaction is SMTPUTF8', async () => {
    await transact('müller.test', ['ann@other.test'], 'Subject: 8bit helo\r\n\r\nX-Tag: helo8-1\r\n');
    await waitFor(() => copies('other.test', 'ann', 'helo8-1').length === 1, 'the copy for ann@other.test');
    const [m = ''] = copies('other.test', 'ann', 'helo8-1');
    assert.match(m, /^Received: from m\?ller\.test \(\[127\.0\.0\.1\]\)$/m);
    const head = m.slice(0, m.indexOf('\n\n'));
    assert.doesNotMatch(head, /[^\x00-\x7f]/, 'an 8-bit header in a message sent without SMTPUTF8');
  });
});
