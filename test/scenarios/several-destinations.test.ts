// One message for several destinations, as its sender and the postmaster meet it: a local
// mailbox, a next hop that takes it, one that refuses its recipient for good, and one that is
// down when the mail arrives. The mailbox and the working hop get it once; the sender gets one
// bounce naming only the refused recipient; the daemon is SIGKILLed; once the last host is up,
// `logmta queue flush` delivers the rest at once (past the dead-host mark the arrival left, as
// Postfix's `postqueue -f` does) — and after all that nothing arrived twice. Without a restart
// in between, `queue flush` and `sendmail -q` (what network-up hooks and scripts call) deliver
// at once too, and `sendmail -bp` (mailq) lists the deferred mail first.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { runLogmta, waitFor, waitForMaildir } from '../support/daemon.js';
import { scenes } from './kit.js';

const scene = scenes();

/** A relay for loopback clients whose deferred mail waits an hour, with a route per domain. */
function relayToml(routes: Record<string, number>): string {
  let t = '[smtp]\nrelay_networks = ["127.0.0.0/8"]\n[queue]\nretry = ["1h"]\n';
  for (const [domain, port] of Object.entries(routes))
    t += `[[route]]\ndomain = "${domain}"\nhost = "127.0.0.1:${port}"\n`;
  return t;
}

describe('a message for several destinations', () => {
  test('each recipient gets it once, the sender one bounce, a flush the rest after a SIGKILL', async () => {
    const a = await scene.customer();
    const b = await scene.customer();
    const c = await scene.customer();
    const senderMx = await scene.customer();
    await a.up();
    await b.up({ rcptReply: (addr) => (addr.startsWith('gone@') ? '550 5.1.1 no such user' : undefined) });
    await senderMx.up();
    // c.test is down (connection refused) when the mail arrives.
    const s = await scene.stage({
      toml: relayToml({ 'a.test': a.port, 'b.test': b.port, 'c.test': c.port, 'sender.test': senderMx.port }),
    });
    const r = await sendMail(s.port, {
      from: 'bob@sender.test',
      to: ['alice@localhost', 'ok@a.test', 'gone@b.test', 'late@c.test'],
      subject: 'four ways',
    });
    assert.deepEqual(
      r.recipients.map((x) => x.status),
      ['delivered', 'delivered', 'delivered', 'delivered'],
    );
    const mailbox = `${s.dataDir}/mail/alice`;
    await waitForMaildir(mailbox, 1);
    await a.waitFor(1);
    await waitFor(() => senderMx.received.length >= 1, 'the bounce at the sender');
    await s.waitLanes((l) => (l['retry-3600s'] ?? 0) === 1, 'late@c.test waiting for its retry');
    const bounce = senderMx.received[0]!;
    assert.equal(bounce.sender, '');
    assert.deepEqual(bounce.recipients, ['bob@sender.test']);
    const named = [...bounce.data.toString('latin1').matchAll(/^Final-Recipient: rfc822;\s*(\S+)\r$/gim)].map(
      (m) => m[1],
    );
    assert.deepEqual(named, ['gone@b.test'], 'the bounce names the refused recipient only');

    // Every outcome durable before the kill: the queue logs "delivered"/"failed" only once an
    // outcome's commit is done (alice, ok@a.test and the bounce; gone@b.test). A delivery whose
    // outcome a SIGKILL cuts off may be made again (at least once) — not what this test is about.
    await s.waitLog('delivered', 3);
    await s.waitLog('failed', 1);
    await s.restart('SIGKILL');
    await c.up();
    const flush = await runLogmta(['queue', 'flush', '--config', s.daemon.configFile!]);
    assert.equal(flush.code, 0, flush.stdout + flush.stderr);
    // At once: not after the dead-host interval (60 s) the arrival's refused connection started.
    await c.waitFor(1, 'late@c.test delivered by the flush', 10_000);
    await s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue');
    await new Promise((res) => setTimeout(res, 500));
    assert.deepEqual(c.recipients(), ['late@c.test']);
    assert.deepEqual(a.recipients(), ['ok@a.test']);
    assert.deepEqual(b.recipients(), [], 'the refused recipient was never accepted');
    assert.equal(senderMx.received.length, 1, 'one bounce');
    assert.equal((await waitForMaildir(mailbox, 1)).length, 1, 'one copy in the mailbox');
  });

  for (const cmd of [
    ['queue', 'flush'],
    ['sendmail', '-q'],
  ])
    test(`\`logmta ${cmd.join(' ')}\` right after the host came back is not held up by the dead-host mark of its outage`, async () => {
      const c = await scene.customer();
      const s = await scene.stage({ toml: relayToml({ 'c.test': c.port }) });
      await s.send(['late@c.test']);
      await s.waitLanes((l) => (l['retry-3600s'] ?? 0) === 1, 'the mail deferred while c.test is down');
      // mailq, as scripts call it: the deferred message is listed with its recipient.
      const q = await runLogmta(['sendmail', '-bp', '--config', s.daemon.configFile!]);
      assert.equal(q.code, 0, q.stderr);
      assert.match(q.stdout, /late@c\.test/);
      await c.up();
      const flush = await runLogmta([...cmd, '--config', s.daemon.configFile!]);
      assert.equal(flush.code, 0, flush.stdout + flush.stderr);
      await c.waitFor(1, 'the mail delivered by the flush', 10_000);
      assert.deepEqual(c.recipients(), ['late@c.test']);
    });

  test('mail held by the postmaster during the outage goes at once when released after it', async () => {
    const c = await scene.customer();
    const s = await scene.stage({ toml: relayToml({ 'c.test': c.port }) });
    await s.send(['late@c.test']);
    await s.waitLanes((l) => (l['retry-3600s'] ?? 0) === 1, 'the mail deferred while c.test is down');
    const cfg = s.daemon.configFile!;
    const hold = await runLogmta(['queue', 'hold', '--domain', 'c.test', '--yes', '--config', cfg]);
    assert.equal(hold.code, 0, hold.stdout + hold.stderr);
    await s.waitLanes((l) => (l.hold ?? 0) === 1, 'the mail in the hold lane');
    await c.up();
    const release = await runLogmta(['queue', 'release', '--lane', 'hold', '--yes', '--config', cfg]);
    assert.equal(release.code, 0, release.stdout + release.stderr);
    await c.waitFor(1, 'the released mail delivered', 10_000);
    assert.deepEqual(c.recipients(), ['late@c.test']);
  });
});
