// Bounces across a SIGKILL, as the sender meets them: the daemon is killed at moments around a
// permanent failure — while the refusal is known only on the wire, right as the attempt ends
// (racing the commit), once the failure is durable — and started again on the same data. The
// sender's mail host is down across the kill and comes up afterwards. Whatever the moment, the
// sender gets one bounce naming the refused recipient, and a recipient whose failure was durable
// is never tried again. The only tolerated extra is docs/queue-states.md S24: a report durable
// without its failure, which is then tried and bounced again.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { waitFor } from '../support/daemon.js';
import { sendMail } from '../support/inject.js';
import { type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();

interface Scene {
  s: Stage;
  dst: CustomerHost;
  home: CustomerHost;
  /** RCPTs the next hop saw for the refused recipient (every attempt, across restarts). */
  refusals: () => number;
}

/** A relay, a next hop refusing gone@dst.test for good, the sender's host (down), and `more` routes. */
async function setup(more: Record<string, number> = {}): Promise<Scene> {
  let refusals = 0;
  const dst = await scene.customer();
  await dst.up({
    rcptReply: (a) => {
      if (a !== 'gone@dst.test') return undefined;
      refusals++;
      return '550 5.1.1 no such user';
    },
  });
  const home = await scene.customer();
  const routes: Record<string, number> = { 'dst.test': dst.port, 'sender.test': home.port, ...more };
  let toml = '[smtp]\nrelay_networks = ["127.0.0.0/8"]\n[queue]\nretry = ["1s"]\n';
  for (const [domain, port] of Object.entries(routes))
    toml += `[[route]]\ndomain = "${domain}"\nhost = "127.0.0.1:${port}"\n`;
  const s = await scene.stage({ toml });
  return { s, dst, home, refusals: () => refusals };
}

/** Starts the killed daemon again, brings the sender's host up, and lets the queue drain. */
async function afterKill({ s, home }: Scene): Promise<void> {
  await s.restart('SIGKILL');
  await home.up();
  await s.admin('flush'); // past the dead-host mark the down host left
  await s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue', 20_000);
}

/** The recipients the bounces at the sender's host name, one entry per mention. */
function bounced(home: CustomerHost): string[] {
  return home.received
    .filter((t) => t.sender === '')
    .flatMap((t) =>
      [...t.data.toString('latin1').matchAll(/^Final-Recipient: rfc822;\s*(\S+)\r$/gim)].map((m) => m[1]!),
    );
}

const attemptEnded = (s: Stage, status: string) => () =>
  s.logLines().some((l) => l.msg === 'delivery attempt' && l.rcpt === 'gone@dst.test' && l.status === status);

describe('a permanent failure and a SIGKILL', () => {
  test('killed once the failure is durable: one bounce after the restart, the recipient not tried again', async () => {
    const sc = await setup();
    await sendMail(sc.s.port, { from: 'bob@sender.test', to: ['gone@dst.test'] });
    await sc.s.waitLog('failed'); // logged only once the failure and its bounce are committed
    await afterKill(sc);
    await sc.home.waitFor(1, 'the bounce');
    assert.deepEqual(bounced(sc.home), ['gone@dst.test']);
    assert.equal(sc.home.received.length, 1);
    assert.equal(sc.refusals(), 1, 'a durable failure is final');
  });

  test('killed while the refusal is known only on the wire: tried again, one bounce', async () => {
    const sc = await setup();
    // ok@dst.test's end of data is never answered before the kill: the attempt cannot end, so
    // gone@dst.test's 550 is in no record yet.
    let held = false;
    sc.dst.opts.holdDataReply = () => {
      held = true;
      return new Promise<void>(() => {});
    };
    await sendMail(sc.s.port, { from: 'bob@sender.test', to: ['gone@dst.test', 'ok@dst.test'] });
    await waitFor(() => held, 'the end of data held');
    assert.equal(sc.refusals(), 1);
    delete sc.dst.opts.holdDataReply;
    await afterKill(sc);
    await sc.home.waitFor(1, 'the bounce');
    assert.deepEqual(bounced(sc.home), ['gone@dst.test']);
    assert.equal(sc.home.received.length, 1);
    assert.equal(sc.refusals(), 2, 'the refusal was not durable: asked again');
    assert.ok(sc.dst.recipients().includes('ok@dst.test'));
  });

  test('killed as the failed attempt ends, racing its commit: one bounce (S24 aside), three times', async () => {
    for (let round = 0; round < 3; round++) {
      const sc = await setup();
      await sendMail(sc.s.port, { from: 'bob@sender.test', to: ['gone@dst.test'] });
      await waitFor(attemptEnded(sc.s, 'failed'), 'the failed attempt logged');
      await afterKill(sc);
      await sc.home.waitFor(1, 'the bounce');
      const names = bounced(sc.home);
      if (names.length === 2) {
        // S24: a bounce was durable without its failure; the recipient was tried and bounced again.
        assert.equal(sc.refusals(), 2, `two bounces without a second refusal (round ${round})`);
      } else {
        assert.deepEqual(names, ['gone@dst.test'], `round ${round}`);
        assert.ok(sc.refusals() <= 2, `round ${round}`);
      }
      assert.equal(sc.home.received.length, names.length, 'nothing but bounces at the sender host');
      await sc.s.close();
    }
  });

  test('a bounce the sender host refuses after a restart is dropped and logged, never bounced', async () => {
    const sc = await setup();
    await sendMail(sc.s.port, { from: 'bob@sender.test', to: ['gone@dst.test'] });
    await sc.s.waitLog('failed');
    sc.home.opts.rcptReply = () => '550 5.1.1 sender mailbox gone';
    await afterKill(sc);
    const bounceFailed = () =>
      sc.s.logLines().some((l) => l.msg === 'failed' && l.rcpt === 'bob@sender.test' && l.code === 550);
    await waitFor(bounceFailed, 'the bounce refused and logged as failed');
    await sc.s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue');
    assert.equal(sc.home.received.length, 0);
    assert.equal(sc.dst.received.length, 0);
    assert.equal(
      sc.home.commands().filter((c) => c.startsWith('MAIL FROM:<>')).length,
      1,
      'the bounce was offered once; nothing was made about it',
    );
  });

  test('two destinations: the one done first keeps its notice across a kill, the other bounces once', async () => {
    // a.test takes glad@ (NOTIFY=SUCCESS; no DSN there: "relayed") and its outcome is committed
    // as it comes; dst.test holds its end of data until the kill, then refuses gone@ for good.
    const a = await scene.customer();
    await a.up();
    const sc = await setup({ 'a.test': a.port });
    const s = sc.s;
    let held = false;
    const refuse = sc.dst.opts.rcptReply;
    sc.dst.opts.rcptReply = () => undefined;
    sc.dst.opts.holdDataReply = () => {
      held = true;
      return new Promise<void>(() => {});
    };
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [{ address: 'glad@a.test', notify: ['SUCCESS', 'FAILURE'] }, 'gone@dst.test'],
    });
    await waitFor(() => held, 'dst.test holding its end of data');
    await waitFor(
      () => s.logLines().some((l) => l.msg === 'delivered' && l.rcpt === 'glad@a.test'),
      "glad@a.test's outcome committed",
    );
    delete sc.dst.opts.holdDataReply;
    if (refuse) sc.dst.opts.rcptReply = refuse;
    await afterKill(sc);
    await waitFor(() => bounced(sc.home).length >= 2, 'the notice and the bounce');
    assert.deepEqual(a.recipients(), ['glad@a.test'], 'a durable delivery is not repeated');
    assert.deepEqual(bounced(sc.home).sort(), ['glad@a.test', 'gone@dst.test']);
    const actions = sc.home.received.map((t) => /^Action: (\S+)\r$/m.exec(t.data.toString('latin1'))?.[1]);
    assert.deepEqual(actions.sort(), ['failed', 'relayed']);
  });
});

describe('delay warnings and expiring bounces across time and a SIGKILL', () => {
  test('one delay warning, also when the daemon is killed after it went out', async () => {
    let open = false;
    const dst = await scene.customer();
    await dst.up({ rcptReply: () => (open ? undefined : '451 4.3.0 try again later') });
    const home = await scene.customer();
    await home.up();
    const s = await scene.stage({
      toml: `[smtp]\nrelay_networks = ["127.0.0.0/8"]\n[queue]\nretry = ["1s"]\ndelay_warning = "1s"\n[[route]]\ndomain = "dst.test"\nhost = "127.0.0.1:${dst.port}"\n[[route]]\ndomain = "sender.test"\nhost = "127.0.0.1:${home.port}"\n`,
    });
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [{ address: 'slow@dst.test', notify: ['DELAY'] }],
    });
    await home.waitFor(1, 'the delay warning');
    // Killed once the warning's own delivery is durable: a SIGKILL before that may deliver the
    // same warning again (S10, the same Message-ID), which is not what this test is about.
    await waitFor(
      () => s.logLines().some((l) => l.msg === 'delivered' && l.rcpt === 'bob@sender.test'),
      "the warning's delivery committed",
    );
    await s.restart('SIGKILL');
    // Deferred again, at least twice, by the restarted daemon: past delay_warning every time.
    await waitFor(
      () => s.logLines().filter((l) => l.msg === 'deferred' && l.rcpt === 'slow@dst.test').length >= 2,
      'two more deferrals after the restart',
    );
    open = true;
    await dst.waitFor(1, 'the delivery');
    await s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue');
    assert.equal(
      home.received.length,
      1,
      `one warning in all: ${home.received.map((t) => /^Message-ID: (.*)\r$/m.exec(t.data.toString('latin1'))?.[1]).join(' ')}`,
    );
    assert.match(home.received[0]!.data.toString('latin1'), /^Action: delayed\r$/m);
    assert.deepEqual(dst.recipients(), ['slow@dst.test']);
  });

  test('a bounce the sender host keeps deferring expires at max_age: dropped and logged, nothing about it', async () => {
    const dst = await scene.customer();
    await dst.up({ rcptReply: () => '550 5.1.1 no such user' });
    const home = await scene.customer();
    await home.up({ rcptReply: () => '451 4.2.0 mailbox locked' });
    const s = await scene.stage({
      toml: `[smtp]\nrelay_networks = ["127.0.0.0/8"]\n[queue]\nretry = ["1s"]\nmax_age = "3s"\n[[route]]\ndomain = "dst.test"\nhost = "127.0.0.1:${dst.port}"\n[[route]]\ndomain = "sender.test"\nhost = "127.0.0.1:${home.port}"\n`,
    });
    await sendMail(s.port, { from: 'bob@sender.test', to: ['gone@dst.test'] });
    await waitFor(
      () => s.logLines().some((l) => l.msg === 'expired' && l.rcpt === 'bob@sender.test'),
      'the bounce expired',
      15_000,
    );
    await s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue');
    assert.equal(home.received.length, 0);
    assert.equal(dst.received.length, 0);
    const toHome = home.commands().filter((c) => c.startsWith('MAIL FROM:'));
    assert.ok(toHome.length >= 2, 'the bounce was tried again and again');
    assert.ok(
      toHome.every((c) => c.startsWith('MAIL FROM:<>')),
      `only the bounce went to the sender host: ${toHome.join(', ')}`,
    );
  });
});
