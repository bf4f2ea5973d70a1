// Aliases of a local domain as a postmaster sets them up and as mail for them lands, against a
// `logmta serve` child process: abuse@ and postmaster@ stand for real mailboxes; each mailbox gets
// one copy however many of its names a message is sent to; an unknown name is still refused; and
// `logmta check` refuses what cannot be meant (a chain, a target that is not a user, a name that
// is both).
// Fails: naming the mailbox with the wrong number of copies, or the setting whose error is missing.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { codeOf, makeTempDir, maildirMessages, runLogmta, waitFor } from '../support/daemon.js';
import { type ServedSuite, serveSuite } from '../support/served.js';

let srv: ServedSuite;
const mail = (dir: string): string => join(dir, 'data', 'mail');

const toml = (dir: string): string => `
[[local]]
domain = "localhost"
maildir = "${mail(dir)}/{user}"
users = ["ann", "ben"]
aliases = { abuse = ["ann", "ben"], postmaster = "ann", Hostmaster = ["BEN"] }
`;

const copies = (user: string, tag: string): string[] =>
  maildirMessages(join(mail(srv.dir), user)).filter((m) => m.includes(tag));

describe('aliases of a local domain (logmta serve)', () => {
  srv = serveSuite('logmta-aliases-', toml);

  test('a message to abuse@, postmaster@ and ann@ lands once in each real mailbox; unknown names are refused', async () => {
    const chat = await srv.chat();
    const rcpts = [
      'abuse@localhost',
      'postmaster@localhost',
      'ANN@localhost',
      'nobody@localhost',
      'hostmaster@localhost',
    ];
    chat.send(
      `EHLO client.test\r\nMAIL FROM:<reporter@example.org>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join('')}DATA\r\n`,
    );
    const r = await chat.read(3 + rcpts.length);
    chat.send('Subject: spam report\r\n\r\nX-Tag: alias-1\r\n.\r\nQUIT\r\n');
    r.push(...(await chat.read(2)));
    assert.deepEqual(r.map(codeOf), [
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '250 2.1.5',
      '250 2.1.5',
      '550 5.1.1',
      '250 2.1.5',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    await waitFor(
      () => copies('ann', 'alias-1').length >= 1 && copies('ben', 'alias-1').length >= 1,
      'ann and ben',
    );
    // abuse and postmaster both give ann@localhost, abuse and Hostmaster ben@localhost: queued
    // once each. ANN@localhost is another recipient (a local part keeps its case, RFC 5321 2.4)
    // whose mailbox is ann's: three outcomes, one copy per mailbox.
    await waitFor(
      () => (srv.daemon.stdout().match(/"msg":"delivered"/g) ?? []).length >= 3,
      'three delivered outcomes',
    );
    assert.equal(copies('ann', 'alias-1').length, 1, 'one copy for ann');
    assert.equal(copies('ben', 'alias-1').length, 1, 'one copy for ben');
    assert.deepEqual(maildirMessages(join(mail(srv.dir), 'abuse')), [], 'no mailbox named after the alias');
    const received = srv.daemon
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"msg":"received"'))
      .map((l) => JSON.parse(l) as { recipients: number });
    assert.deepEqual(
      received.map((l) => l.recipients),
      [3],
    );
  });
});

test('logmta check refuses aliases that cannot be meant, naming each', async () => {
  const dir = makeTempDir('logmta-aliases-check-');
  const file = join(dir, 'bad.toml');
  writeFileSync(
    file,
    `data_dir = "${dir}/data"
[[local]]
domain = "example.test"
users = ["ann", "ben"]
aliases = { abuse = ["ann", "root"], root = "ann", ben = "ann", sales = "carol", "a/b" = "ann", empty = [] }
`,
  );
  const r = await runLogmta(['check', '--config', file]);
  assert.equal(r.code, 78, r.stdout + r.stderr);
  const out = r.stdout + r.stderr;
  assert.match(out, /"root" is itself an alias/);
  assert.match(out, /"ben" is also in users/);
  assert.match(out, /"carol" is not in this domain's users/);
  assert.match(out, /"a\/b" is not a mailbox name/);
  assert.match(out, /aliases\.empty must be a local part or a non-empty list/);
});
