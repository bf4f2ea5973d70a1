// `logmta odmr` (one poll as an ODMR customer, as a child process) against a logmta provider:
// the held mail lands in the customer's queue and from there in its Maildir; a second run finds
// nothing; a wrong password is an error exit and leaves the provider's mail held.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  makeTempDir,
  maildirMessages,
  runLogmta,
  startTestDaemon,
  type TestDaemon,
  testToml,
  waitFor,
} from '../support/daemon.js';
import { TLS_TOML, writeTestCertFiles } from '../support/certs.js';
import { cuttingProxy } from '../support/cutting-proxy.js';
import { sendMail } from '../support/inject.js';

let p: TestDaemon;
let dir: string;
let odmrPort: number;

before(async () => {
  p = await startTestDaemon({
    toml: `
[[odmr.account]]
user = "acme"
password = "acme-secret"
domains = ["acme.example"]
`,
  });
  const a = p.daemon.addresses.odmr[0] ?? '';
  odmrPort = Number(a.slice(a.lastIndexOf(':') + 1));
  dir = makeTempDir();
  writeFileSync(join(dir, 'good'), 'acme-secret\n', { mode: 0o600 });
  writeFileSync(join(dir, 'bad'), 'nope\n', { mode: 0o600 });
  writeFileSync(
    join(dir, 'logmta.toml'),
    testToml('[[local]]\ndomain = "acme.example"\n', join(dir, 'data')),
  );
});
after(async () => {
  await p.stop();
  rmSync(dir, { recursive: true, force: true });
});

const odmr = (pw: string, port = odmrPort) =>
  runLogmta(
    [
      'odmr',
      '--provider',
      `127.0.0.1:${port}`,
      '--user',
      'acme',
      '--password-file',
      join(dir, pw),
      '--domains',
      'acme.example',
      '--config',
      join(dir, 'logmta.toml'),
    ],
    {
      timeoutMs: 30_000,
    },
  );

test('logmta odmr collects held mail into its own queue and Maildir', async () => {
  await sendMail(p.port, { from: 'a@sender.test', to: ['kim@acme.example'], subject: 'hello kim' });
  await waitFor(() => p.daemon.queues.heldCount('acme.example') === 1, 'held');
  const bad = await odmr('bad');
  assert.notEqual(bad.code, 0, bad.stderr);
  assert.match(bad.stderr, /535/);
  assert.equal(p.daemon.queues.heldCount('acme.example'), 1);
  const r = await odmr('good');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /received 1 message/);
  const box = join(dir, 'data', 'mail', 'kim');
  await waitFor(() => maildirMessages(box).length === 1, 'the Maildir copy');
  assert.match(maildirMessages(box)[0] ?? '', /Subject: hello kim/);
  assert.equal(p.daemon.queues.heldCount('acme.example'), 0);
  const again = await odmr('good');
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /no mail waiting/);
});

test('a line that drops mid-session: logmta odmr exits 75 saying the rest stays held, and the next run brings it', async () => {
  for (const n of [1, 2, 3, 4, 5])
    await sendMail(p.port, { from: 'a@sender.test', to: [`cut${n}@acme.example`], subject: `cut ${n}` });
  await waitFor(() => p.daemon.queues.heldCount('acme.example') === 5, 'five held');
  const proxy = await cuttingProxy(odmrPort, 3);
  try {
    const cut = await odmr('good', proxy.port);
    assert.equal(cut.code, 75, `${cut.stdout}\n${cut.stderr}`);
    assert.match(cut.stderr, /before its QUIT.*the rest stays held/);
  } finally {
    await proxy.close();
  }
  assert.ok(p.daemon.queues.heldCount('acme.example') >= 3, 'the rest is still held at the provider');
  const rest = await odmr('good');
  assert.equal(rest.code, 0, rest.stderr);
  const got = (): number =>
    [1, 2, 3, 4, 5].filter((n) => maildirMessages(join(dir, 'data', 'mail', `cut${n}`)).length > 0).length;
  await waitFor(() => got() === 5, 'all five in their Maildirs');
});

test('logmta odmr opens no listener of its own, not even an implicit-TLS submissions one', async () => {
  await writeTestCertFiles(dir);
  const cfg = join(dir, 'with-submissions.toml');
  writeFileSync(
    cfg,
    testToml(
      `${TLS_TOML}\n[smtp]\nsubmissions = ["127.0.0.1:0"]\n[[local]]\ndomain = "acme.example"\n`,
      join(dir, 'data'),
    ),
  );
  const r = await runLogmta(
    [
      'odmr',
      '--provider',
      `127.0.0.1:${odmrPort}`,
      '--user',
      'acme',
      '--password-file',
      join(dir, 'good'),
      '--config',
      cfg,
    ],
    { timeoutMs: 30_000 },
  );
  assert.equal(r.code, 0, r.stderr);
  const started = r.stdout.split('\n').find((l) => l.includes('"logmta started"'));
  assert.ok(started, r.stdout);
  const s = JSON.parse(started) as { smtp: string[]; submission: string[]; submissions: string[] };
  assert.deepEqual([s.smtp, s.submission, s.submissions], [[], [], []]);
});
