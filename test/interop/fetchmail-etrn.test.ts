// fetchmail --protocol ETRN against logmta: mail held for two ETRN domains (their host was
// refusing) is flushed to the sink after fetchmail's ETRNs — both domains, which only works
// because logmta answers 251 solely for a truly empty lane (fetchmail stops at the first 251).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { hasTool, startTestDaemon, type TestDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { runFetchmail } from './fetchmail-support.js';
import { sendMail } from '../support/inject.js';

const skip = hasTool('fetchmail') ? false : 'fetchmail is not installed';
let sink: SmtpSink;
let d: TestDaemon;
let down = true;

before(async () => {
  if (skip) return;
  sink = await SmtpSink.start({ rcptReply: () => (down ? '451 4.3.0 customer offline' : undefined) });
  const etrn = (dom: string) => `
[[etrn]]
domain = "${dom}"
host = "127.0.0.1:${sink.port}"
probe_interval = "1h"
`;
  d = await startTestDaemon({
    toml: etrn('branch.example') + etrn('depot.example'),
    deps: { deadHostMs: 1 },
  });
});
after(async () => {
  if (skip) return;
  await d.stop();
  await sink.close();
});

test('fetchmail ETRN flushes the held mail of two domains to their host', { skip }, async () => {
  await sendMail(d.port, { from: 'a@sender.test', to: ['x@branch.example'] });
  await sendMail(d.port, { from: 'a@sender.test', to: ['y@depot.example'] });
  await sendMail(d.port, { from: 'a@sender.test', to: ['z@depot.example'] });
  await waitFor(
    () =>
      d.daemon.queues.heldCount('branch.example') === 1 && d.daemon.queues.heldCount('depot.example') === 2,
    'held mail',
  );
  down = false;
  const run = await runFetchmail(
    `poll 127.0.0.1 port ${d.port} protocol ETRN fetchdomains branch.example,depot.example\n`,
  );
  assert.match(run.output, /ETRN branch\.example/, run.output);
  assert.match(run.output, /ETRN depot\.example/, run.output);
  assert.match(run.output, /253 2\.0\.0 OK, 2 pending messages for node depot\.example started/, run.output);
  await waitFor(() => sink.transactions.length >= 3, 'three deliveries');
  assert.deepEqual(sink.transactions.map((t) => t.recipients[0]).sort(), [
    'x@branch.example',
    'y@depot.example',
    'z@depot.example',
  ]);
  await waitFor(
    () => d.daemon.queues.heldCount('branch.example') + d.daemon.queues.heldCount('depot.example') === 0,
    'empty lanes',
  );
  // Now both lanes are empty: fetchmail hears 251 for the first domain and, as documented,
  // sends no ETRN for the second — which is why 251 must mean "truly empty".
  const again = await runFetchmail(
    `poll 127.0.0.1 port ${d.port} protocol ETRN fetchdomains branch.example,depot.example\n`,
  );
  assert.match(again.output, /251 2\.0\.0 OK, no messages waiting for node branch\.example/, again.output);
  assert.doesNotMatch(again.output, /ETRN depot\.example/, again.output);
  assert.equal(again.code, 0, again.output);
});
