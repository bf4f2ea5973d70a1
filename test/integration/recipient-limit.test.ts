// `smtp.max_recipients` below RFC 5321's 100 (§4.5.3.1.8), as an operator meets it: allowed, as
// Postfix allows a lower smtpd_recipient_limit, with a notice from `logmta check` and at the
// start of `logmta serve`; the running daemon answers 452 4.5.3 to the RCPTs beyond the limit,
// keeps the first ones, and takes the rest in a second transaction. (The server used to refuse
// such a value only when the first client connected: the daemon crashed on it.)
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeTempDir, runLogmta, spawnDaemon } from '../support/daemon.js';
import { sendRaw } from '../support/smtp-send.js';

const DATA = 'From: a@example.org\r\nSubject: many\r\n\r\nHello.\r\n';

test('logmta check: max_recipients below 100 is valid, with a notice that says what clients meet', async () => {
  const dir = makeTempDir('logmta-rcptlimit-');
  const file = join(dir, 'low.toml');
  writeFileSync(file, `hostname = "mx.example"\ndata_dir = "${dir}/data"\n[smtp]\nmax_recipients = 50\n`);
  const r = await runLogmta(['check', '--config', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /: valid\n/);
  assert.match(
    r.stdout,
    /notice: smtp\.max_recipients = 50 is below the 100 recipients per transaction RFC 5321 §4\.5\.3\.1\.8 requires .* the RCPTs beyond the first 50 get 452 4\.5\.3/,
  );

  const dflt = join(dir, 'default.toml');
  writeFileSync(dflt, `hostname = "mx.example"\ndata_dir = "${dir}/data"\n`);
  const d = await runLogmta(['check', '--config', dflt]);
  assert.equal(d.code, 0, d.stderr);
  assert.doesNotMatch(d.stdout, /max_recipients/);

  const zero = join(dir, 'zero.toml');
  writeFileSync(zero, `hostname = "mx.example"\ndata_dir = "${dir}/data"\n[smtp]\nmax_recipients = 0\n`);
  const z = await runLogmta(['check', '--config', zero]);
  assert.equal(z.code, 78);
  assert.match(z.stderr, /smtp\.max_recipients: expected a positive integer, got 0/);
});

test('logmta serve with max_recipients = 50: the 51st RCPT and after get 452 4.5.3, the first 50 are taken, the rest go in a second transaction', async () => {
  const d = await spawnDaemon({ toml: '[smtp]\nmax_recipients = 50\n' });
  try {
    const to = Array.from({ length: 60 }, (_, i) => `u${i + 1}@localhost`);
    const first = await sendRaw(d.port, { from: 'a@example.org', to, data: DATA });
    // EHLO, MAIL, 60 RCPTs, DATA, end of data.
    const rcpts = first.replies.slice(2, 62);
    assert.deepEqual(
      rcpts.map((r) => r.slice(0, 3)),
      [...Array(50).fill('250'), ...Array(10).fill('452')],
    );
    assert.match(rcpts[50]!, /^452 4\.5\.3 /);
    assert.match(first.final, /^250 /);
    // The daemon is still there (it used to crash at the first connection) and takes the rest.
    const rest = await sendRaw(d.port, { from: 'a@example.org', to: to.slice(50), data: DATA });
    assert.match(rest.final, /^250 /);
    assert.equal(rest.replies.filter((r) => r.startsWith('452')).length, 0);
  } finally {
    const exit = await d.stop();
    assert.equal(exit.code, 0, d.stderr());
  }
  // The log (written asynchronously: complete once the daemon has stopped) said so at start.
  assert.match(d.stdout(), /"notice":"smtp\.max_recipients = 50 is below the 100 recipients/);
});
