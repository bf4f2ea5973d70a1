// ETRN probes end to end: while an ETRN domain's host refuses (greeting 421), the periodic probe
// fails again and again and writes nothing — not one byte is appended to the queue and no segment
// file changes size; once the host greets again, the next probe flushes the held lane.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileSizes, startTestDaemon, type TestDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { sendMail } from '../support/inject.js';
import { internals } from '../../src/queue/queue.js';

let sink: SmtpSink;
let d: TestDaemon;

before(async () => {
  sink = await SmtpSink.start({ greeting: '421 4.3.2 branch office offline' });
  d = await startTestDaemon({
    toml: `
[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${sink.port}"
probe_interval = "20ms"
`,
    deps: { deadHostMs: 1 },
  });
});
after(async () => {
  await d.stop();
  await sink.close();
});

const writtenBy = (t: TestDaemon): number =>
  t.daemon.queues.list.reduce((n, q) => n + internals(q).writer.stats.bytes, 0);
const written = (): number => writtenBy(d);

test('failed probes write nothing; the first successful probe flushes the lane', async () => {
  for (let i = 0; i < 2; i++) await sendMail(d.port, { from: 'a@sender.test', to: [`u${i}@branch.example`] });
  await waitFor(() => d.daemon.queues.heldCount('branch.example') === 2, 'two held pieces');
  // The baseline once the accepts' writes have landed and a few probes have failed since.
  const first = sink.connections;
  await waitFor(
    () => d.daemon.queues.list.every((q) => q.pendingBytes === 0) && sink.connections >= first + 3,
    'nothing left to write and three failed probes',
    15_000,
  );
  const bytes = written();
  const files = fileSizes(join(d.dataDir, 'queue'));
  const conns = sink.connections;
  // Many probes against the refusing host.
  await waitFor(() => sink.connections >= conns + 25, '25 failed probes', 15_000);
  assert.equal(written(), bytes, 'no byte appended to the queue by failed probes');
  assert.deepEqual(fileSizes(join(d.dataDir, 'queue')), files, 'no segment file changed');
  assert.equal(d.daemon.queues.heldCount('branch.example'), 2);
  assert.equal(sink.transactions.length, 0);
  // The host is back: the next probe succeeds and the lane is delivered.
  delete sink.opts.greeting;
  await waitFor(() => sink.transactions.length >= 2, 'the held mail delivered', 15_000);
  await waitFor(() => d.daemon.queues.heldCount('branch.example') === 0, 'an empty lane');
  assert.deepEqual(sink.transactions.map((t) => t.recipients[0]).sort(), [
    'u0@branch.example',
    'u1@branch.example',
  ]);
});

test('a host that greets with our own hostname is this MTA: probes fail, nothing is flushed nor written', async () => {
  const self = await SmtpSink.start({ greeting: '220 mx.test ESMTP logmta' });
  const t = await startTestDaemon({
    toml: `
[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${self.port}"
probe_interval = "20ms"
`,
  });
  try {
    await sendMail(t.port, { from: 'a@sender.test', to: ['u@branch.example'] });
    await waitFor(() => t.daemon.queues.heldCount('branch.example') === 1, 'the held piece');
    const first = self.connections;
    await waitFor(
      () => t.daemon.queues.list.every((q) => q.pendingBytes === 0) && self.connections >= first + 3,
      'nothing left to write and three probes',
      15_000,
    );
    const bytes = writtenBy(t);
    const conns = self.connections;
    await waitFor(() => self.connections >= conns + 10, '10 more probes', 15_000);
    assert.equal(writtenBy(t), bytes, 'nothing written');
    assert.deepEqual(
      t.log.filter(
        (l) =>
          l.msg === 'etrn probe succeeded' ||
          (l.msg === 'delivery attempt' && String(l.fields?.lane).startsWith('held-')),
      ),
      [],
      'no probe succeeded, no flush tried a delivery (only the first attempt, before the mail was held)',
    );
    assert.equal(self.transactions.length, 0);
    assert.equal(t.daemon.queues.heldCount('branch.example'), 1, 'still held for the real customer');
  } finally {
    await t.stop();
    await self.close();
  }
});
