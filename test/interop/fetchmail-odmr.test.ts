// fetchmail --protocol ODMR against logmta's provider: fetchmail authenticates with CRAM-MD5,
// sends ATRN for two domains and pipes the reversed session to its local SMTP host (a sink on
// loopback); the mail held for both domains arrives there and the lanes are empty afterwards.
// With a wrong password fetchmail gets 535 and nothing is delivered or lost.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { hasTool, startTestDaemon, type TestDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { runFetchmail } from './fetchmail-support.js';
import { sendMail } from '../support/inject.js';

const skip = hasTool('fetchmail') ? false : 'fetchmail is not installed';
let sink: SmtpSink;
let d: TestDaemon;
let odmrPort = 0;

before(async () => {
  if (skip) return;
  sink = await SmtpSink.start();
  d = await startTestDaemon({
    toml: `
[[odmr.account]]
user = "acme"
password = "acme-secret"
domains = ["acme.example", "acme-corp.example"]
`,
  });
  const a = d.daemon.addresses.odmr[0] ?? '';
  odmrPort = Number(a.slice(a.lastIndexOf(':') + 1));
});
after(async () => {
  if (skip) return;
  await d.stop();
  await sink.close();
});

const rc = (password: string) =>
  `poll 127.0.0.1 port ${odmrPort} protocol ODMR\n` +
  `  user "acme" password "${password}" fetchdomains acme.example,acme-corp.example smtphost 127.0.0.1/${sink.port}\n`;

test('a wrong password gets 535 and nothing is delivered', { skip }, async () => {
  await sendMail(d.port, { from: 'a@sender.test', to: ['one@acme.example'], subject: 'one' });
  await waitFor(() => d.daemon.queues.heldCount('acme.example') === 1, 'held');
  const run = await runFetchmail(rc('wrong-secret'));
  assert.match(run.output, /535 5\.7\.8/, run.output);
  assert.notEqual(run.code, 0, run.output);
  assert.equal(sink.transactions.length, 0);
  assert.equal(d.daemon.queues.heldCount('acme.example'), 1);
});

test('fetchmail ODMR collects the mail held for two domains into its local SMTP host', { skip }, async () => {
  await sendMail(d.port, {
    from: 'a@sender.test',
    to: ['two@acme.example', 'three@acme-corp.example'],
    subject: 'split',
  });
  await sendMail(d.port, { from: 'a@sender.test', to: ['four@acme-corp.example'], subject: 'four' });
  await waitFor(
    () =>
      d.daemon.queues.heldCount('acme.example') === 2 && d.daemon.queues.heldCount('acme-corp.example') === 2,
    'held',
  );
  const run = await runFetchmail(rc('acme-secret'));
  assert.match(run.output, /ATRN acme\.example,acme-corp\.example/, run.output);
  await waitFor(() => sink.transactions.length >= 3, 'three messages at the sink');
  const got = sink.transactions.map((t) => t.recipients.slice().sort().join(' ')).sort();
  assert.deepEqual(got, [
    'four@acme-corp.example',
    'one@acme.example',
    'three@acme-corp.example two@acme.example',
  ]);
  await waitFor(
    () => d.daemon.queues.heldCount('acme.example') + d.daemon.queues.heldCount('acme-corp.example') === 0,
    'empty lanes',
  );
  assert.equal(run.code, 0, run.output);
});
