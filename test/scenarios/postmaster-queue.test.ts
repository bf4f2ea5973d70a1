// The postmaster's hands on a live queue: `logmta queue hold/release/delete/bounce/flush` run as
// child processes against a real `logmta serve`, while the destination is down and its mail is
// being retried, and while a delivery is on the wire. What is asserted is what the people at
// either end end up with: the customer's host receives a held message never before its
// release and then once; a deleted message never arrives and never bounces; an operator bounce
// gives the sender exactly one report; each survives SIGKILL and a restart; a delivery in
// flight when an action arrives ends with the mail delivered once or acted on, never both.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { MessageView } from '../../src/queue/index.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOGMTA_BIN, runTool, waitFor } from '../support/daemon.js';
import { type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();

interface World {
  s: Stage;
  /** The destination of the mail (customer.test), down at first. */
  host: CustomerHost;
  /** The sender's own host (sender.test): where bounces go. Always up. */
  home: CustomerHost;
}

async function world(): Promise<World> {
  const host = await scene.customer();
  const home = await scene.customer();
  await home.up();
  const s = await scene.stage({
    toml: `
[smtp]
relay_domains = ["customer.test"]
[[route]]
domain = "customer.test"
host = "127.0.0.1:${host.port}"
[[route]]
domain = "sender.test"
host = "127.0.0.1:${home.port}"
`,
  });
  return { s, host, home };
}

/** `logmta queue ARGS` against the stage's daemon, as the postmaster types it. */
function queue(s: Stage, args: string[], input?: string) {
  return runTool(
    process.execPath,
    [LOGMTA_BIN, 'queue', ...args, '--config', s.daemon.configFile!],
    input === undefined ? {} : { input },
  );
}

async function list(s: Stage): Promise<MessageView[]> {
  return (await s.admin<{ messages: MessageView[] }>('list')).messages;
}

/** Sends one message per recipient and returns their queue ids, in the same order. */
async function sendAll(s: Stage, rcpts: string[]): Promise<string[]> {
  await s.send(rcpts);
  let ms: MessageView[] = [];
  await s.waitLanes(
    (l) => (l['retry-300s'] ?? 0) === rcpts.length,
    `${rcpts.length} messages deferred to retry-300s`,
  );
  ms = await list(s);
  return rcpts.map((r) => {
    const m = ms.find((x) => x.pieces.some((p) => p.recipients.some((q) => q.address === r)));
    assert.ok(m, `a queued message for ${r}`);
    return m.id;
  });
}

/**
 * Waits until a client (the CLI just started) is connected to the daemon's control socket: the
 * kernel lists every accepted UNIX socket under its listener's path (Linux /proc/net/unix).
 */
async function connected(s: Stage): Promise<void> {
  const path = join(s.dataDir, 'admin.sock');
  await waitFor(
    () =>
      readFileSync('/proc/net/unix', 'utf8')
        .split('\n')
        .filter((l) => l.endsWith(` ${path}`)).length > 1,
    'the queue command connected to the control socket',
  );
}

/** Bounces that came home, and the original recipient each reports on. */
function reportsAbout(home: CustomerHost, rcpt: string): number {
  return home.received.filter(
    (t) => t.sender === '' && t.data.toString('latin1').includes(`Final-Recipient: rfc822; ${rcpt}`),
  ).length;
}

describe('queue actions on a live daemon while a destination is down', () => {
  test('a held message is never delivered, over flushes and a SIGKILL, until released; then exactly once', async () => {
    const { s, host } = await world();
    const [held, other] = await sendAll(s, ['held@customer.test', 'other@customer.test']);
    const h = await queue(s, ['hold', held!]);
    assert.equal(h.code, 0, h.stderr);
    assert.equal(h.stdout, `${held}: held (1 envelope)\n`);

    await host.up();
    const f = await queue(s, ['flush']);
    assert.equal(f.code, 0, f.stderr);
    await host.waitFor(1, 'the other message');
    await s.waitLanes((l) => (l['retry-300s'] ?? 0) === 0, 'the retry lane empty');
    assert.deepEqual(host.recipients(), ['other@customer.test']);
    // The outcome line is logged once the outcome is durable: a SIGKILL before it may repeat the
    // delivery (a duplicate an MTA is allowed), which is not what this test is about.
    await s.waitLog('delivered', 1);

    await s.restart('SIGKILL');
    assert.equal((await s.lanes()).hold, 1, 'still held after recovery');
    assert.equal((await queue(s, ['flush'])).code, 0);
    const shown = await queue(s, ['list']);
    assert.match(shown.stdout, new RegExp(`^${held}!`, 'm'), 'listed with the held mark');
    assert.deepEqual(host.recipients(), ['other@customer.test']);

    const r = await queue(s, ['release', held!]);
    assert.equal(r.code, 0, r.stderr);
    await host.waitFor(2, 'the released message');
    await s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue');
    // The outcome line is logged once the outcome is durable: a SIGKILL before it may repeat the
    // delivery (a duplicate an MTA is allowed), which is not what this test is about.
    await s.waitLog('delivered', 1);
    await s.restart('SIGKILL');
    assert.equal((await queue(s, ['flush'])).code, 0);
    assert.deepEqual(host.recipients().sort(), ['held@customer.test', 'other@customer.test']);
    assert.ok(other);
  });

  test('a deleted message never arrives nor bounces; a bounced one gives its sender one report; both survive SIGKILL', async () => {
    const { s, host, home } = await world();
    const [gone, back, stays] = await sendAll(s, [
      'gone@customer.test',
      'back@customer.test',
      'stays@customer.test',
    ]);
    const d = await queue(s, ['delete', gone!]);
    assert.equal(d.code, 0, d.stderr);
    const b = await queue(s, ['bounce', back!]);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(b.stdout, `${back}: bounced (1 envelope)\n`);
    await home.waitFor(1, 'the bounce');
    // The outcome line is logged once the outcome is durable: a SIGKILL before it may repeat the
    // report's delivery (a duplicate an MTA is allowed), which is not what this test is about.
    await s.waitLog('delivered', 1);

    await s.restart('SIGKILL');
    await host.up();
    assert.equal((await queue(s, ['flush'])).code, 0);
    await host.waitFor(1, 'the message that stays');
    await s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue');
    assert.deepEqual(host.recipients(), ['stays@customer.test']);
    assert.equal(reportsAbout(home, 'back@customer.test'), 1, 'one report for the bounced message');
    assert.equal(reportsAbout(home, 'gone@customer.test'), 0, 'no report for the deleted one');
    assert.equal(home.received.length, 1);
    // Acting on them again: they are gone, and the tool says so.
    const again = await queue(s, ['delete', gone!, back!]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`${gone}: not in the queue`));
    assert.ok(stays);
  });

  test('an action with nothing to do on a queued message says so, not "not in the queue", and exits 0', async () => {
    const { s } = await world();
    const [a, b] = await sendAll(s, ['a@customer.test', 'b@customer.test']);
    assert.equal((await queue(s, ['hold', a!])).code, 0);
    const h = await queue(s, ['hold', '--domain', 'customer.test', '--yes']);
    assert.equal(h.code, 0, h.stderr);
    assert.equal(h.stdout, `${b}: held (1 envelope)\n`);
    assert.equal(h.stderr, `${a}: already held\n`);
    assert.equal((await queue(s, ['release', b!])).code, 0);
    const r = await queue(s, ['release', b!, '0000000000001']);
    assert.equal(r.code, 1, 'an id not queued is still an error');
    assert.match(r.stderr, new RegExp(`^${b}: not held: nothing to release$`, 'm'));
    assert.match(r.stderr, /^0000000000001: not in the queue$/m);
    const f = await queue(s, ['flush', a!]);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(f.stderr, `${a}: not deferred: nothing to flush\n`);
  });

  test('an action refused for a malformed id does nothing to the valid ids beside it', async () => {
    const { s } = await world();
    const [a] = await sendAll(s, ['a@customer.test']);
    for (const verb of ['hold', 'delete', 'bounce']) {
      const r = await queue(s, [verb, a!, 'not-an-id']);
      assert.equal(r.code, 1, `${verb}: ${r.stderr}`);
      assert.match(r.stderr, /not a queue id: "not-an-id"/);
    }
    assert.deepEqual(await s.lanes(), { ...(await s.lanes()), 'retry-300s': 1 });
    assert.equal((await list(s))[0]?.pieces[0]?.lane, 'retry-300s');
  });
});

describe('a bulk action cut short by SIGKILL', () => {
  test('hold --all killed halfway: after the restart every message is held or deferred, none lost, each delivered once', async () => {
    const { s, host } = await world();
    const n = 150;
    const rcpts = Array.from({ length: n }, (_, i) => `m${i}@customer.test`);
    await sendAll(s, rcpts);
    // One commit per message: the first logged hold comes well before the last one.
    const run = queue(s, ['hold', '--all', '--yes']);
    await s.waitLog('operator action', 1);
    await s.kill('SIGKILL');
    const r = await run;
    // Cut short (69: the daemon closed the connection), or, on a fast disk, done just before.
    assert.ok(r.code === 69 || r.code === 0, `${r.code}: ${r.stderr}`);
    if (r.code === 69) assert.match(r.stderr, /closed the control connection/);
    await s.restart('SIGKILL');
    const lanes = await s.lanes();
    assert.equal((lanes.hold ?? 0) + (lanes['retry-300s'] ?? 0), n, JSON.stringify(lanes));
    assert.ok((lanes.hold ?? 0) >= 1, 'the hold that was logged was committed');
    if (r.code === 0) assert.equal(lanes.hold, n, 'an answered bulk hold is all durable');
    await host.up();
    assert.equal((await queue(s, ['release', '--lane', 'hold', '--yes'])).code, 0);
    assert.equal((await queue(s, ['flush'])).code, 0);
    await host.waitFor(n, 'every message', 30_000);
    await s.waitLanes((l) => Object.values(l).every((x) => x === 0), 'an empty queue');
    assert.deepEqual(host.recipients().sort(), [...rcpts].sort());
  });
});

describe('queue actions while the message is on the wire', () => {
  /** A destination that holds its reply to the end of data until `answer` is called. */
  async function onTheWire(reply: string) {
    const w = await world();
    let arrived!: () => void;
    const onData = new Promise<void>((r) => {
      arrived = r;
    });
    let answer!: () => void;
    const held = new Promise<void>((r) => {
      answer = r;
    });
    await w.host.up({
      dataReply: () => {
        arrived();
        return reply.startsWith('2') ? undefined : reply;
      },
      holdDataReply: () => held,
    });
    await w.s.send(['x@customer.test']);
    await onData;
    const [m] = await list(w.s);
    assert.ok(m);
    return { ...w, id: m.id, answer };
  }

  for (const verb of ['delete', 'bounce', 'hold'] as const) {
    test(`${verb} during a delivery that succeeds: delivered once, the tool says it was not there, nothing else happens`, async () => {
      const { s, host, home, id, answer } = await onTheWire('250 ok');
      const run = queue(s, [verb, id]);
      await connected(s);
      answer();
      const r = await run;
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^${id}: not in the queue`));
      await s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue');
      await s.waitLog('delivered', 1); // durable: a SIGKILL before it may repeat the delivery
      await s.restart('SIGKILL');
      assert.equal((await queue(s, ['flush'])).code, 0);
      assert.deepEqual(host.recipients(), ['x@customer.test']);
      assert.equal(home.received.length, 0, 'no report');
    });

    test(`${verb} during a delivery that is deferred: the action is done once the attempt ended`, async () => {
      const { s, host, home, id, answer } = await onTheWire('451 4.3.0 try later');
      const run = queue(s, [verb, id]);
      await connected(s);
      answer();
      const r = await run;
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${id}: ${verb === 'hold' ? 'held' : `${verb}d`} \\(1 envelope\\)`));
      delete host.opts.dataReply;
      delete host.opts.holdDataReply;
      if (verb === 'bounce') {
        // The report goes out at once: a SIGKILL before its delivery is durable may repeat it.
        await home.waitFor(1, 'the bounce');
        await s.waitLog('delivered', 1);
      }
      await s.restart('SIGKILL');
      assert.equal((await queue(s, ['flush'])).code, 0);
      const lanes = await s.lanes();
      assert.equal(lanes.hold ?? 0, verb === 'hold' ? 1 : 0);
      assert.equal(lanes['retry-300s'] ?? 0, 0);
      assert.deepEqual(host.recipients(), [], 'never delivered');
      assert.equal(reportsAbout(home, 'x@customer.test'), verb === 'bounce' ? 1 : 0);
    });
  }
});

describe('a daemon that does not answer', () => {
  test('stopped (SIGSTOP): queue commands exit 69 and sendmail 75 within seconds, instead of hanging', async () => {
    const { s } = await world();
    s.daemon.kill('SIGSTOP');
    const started = Date.now();
    const [l, h, m] = await Promise.all([
      queue(s, ['list']),
      queue(s, ['hold', '--all', '--yes']),
      runTool(
        process.execPath,
        [LOGMTA_BIN, 'sendmail', '--config', s.daemon.configFile!, 'a@customer.test'],
        {
          input: 'Subject: cron\n\nout\n',
          timeoutMs: 60_000,
        },
      ),
    ]);
    s.daemon.kill('SIGCONT');
    assert.equal(l.code, 69, l.stderr);
    assert.equal(h.code, 69, h.stderr);
    assert.equal(m.code, 75, m.stderr);
    for (const r of [l, h, m]) assert.match(r.stderr, /does not answer/);
    assert.ok(Date.now() - started < 30_000, 'gave up within seconds');
  });
});
