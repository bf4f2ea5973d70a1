// Draining a node: three real nodes and a real Redis. Node c holds mail for an ODMR domain homed
// there and deferred mail for a destination that is down; `logmta cluster drain` moves all of it
// to the other nodes (the domain gets a new home, the held lane follows it, the deferred mail is
// spread over the live nodes) and c's queue ends empty; every message then reaches its
// recipient exactly once. A drain is stopped with --stop, one interrupted by a SIGKILL resumes
// by itself when the node starts again, and the node receiving a drain SIGKILLed in the middle of
// it loses nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closedPort } from '../support/daemon.js';
import { redisMissing } from '../support/redis.js';
import { SmtpSink } from '../support/sink.js';
import { rendezvous } from '../../src/cluster/index.js';
import { acmeAccount, arrived, collectSubjects, eventually, subjectOf, TestCluster } from './kit.js';
import { sendMail } from '../support/inject.js';

/** Pieces in the retry ladder. */
const retried = (lanes: Record<string, number>) =>
  Object.entries(lanes)
    .filter(([l]) => l.startsWith('retry'))
    .reduce((n, [, v]) => n + v, 0);

describe('cluster: drain', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let farPort: number;
  let sink: SmtpSink | undefined;
  let near: SmtpSink;

  before(async () => {
    farPort = await closedPort();
    near = await SmtpSink.start();
    c = await TestCluster.start(['a', 'b', 'c'], {
      smtp: 'relay_domains = ["far.test", "near.test"]',
      toml: `
[queue]
retry = ["1h"]

# Two connections to a destination: a node killed mid-delivery repeats at most two messages
# per connection (one being sent, one whose 250 awaits its commit), whatever the load.
[delivery]
concurrency_per_destination = 2

[[route]]
domain = "far.test"
host = "127.0.0.1:${farPort}"

[[route]]
domain = "near.test"
host = "127.0.0.1:${near.port}"

${acmeAccount('acme.test')}`,
    });
    await c.converged();
    assert.equal((await c.node('c').cli(['home', 'acme.test', 'c'])).code, 0);
  });
  after(async () => {
    await sink?.close();
    await near?.close();
    await c?.stopAll();
  });

  test('moves held and deferred mail to the other nodes; each message arrives once; the queue is empty', async () => {
    const [a, b, cc] = [c.node('a'), c.node('b'), c.node('c')];
    for (let i = 1; i <= 3; i++) {
      await sendMail(cc.smtpPort, { from: 'x@outside.test', to: ['u@acme.test'], subject: `held${i}` });
      await sendMail(cc.smtpPort, { from: 'x@outside.test', to: ['u@far.test'], subject: `far${i}` });
    }
    await eventually('held and deferred at c', async () => {
      const s = await cc.status();
      return s.lanes['held-acme.test'] === 3 && retried(s.lanes) === 3;
    });
    // The far destination is back just before the drain: the nodes c hands its mail to deliver it
    // on their first attempt.
    sink = await SmtpSink.start({ port: farPort });
    const r = await cc.cli(['drain', '--wait', '30']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /draining to a, b: 0 message\(s\) left/);
    assert.equal((await cc.status()).messages, 0, "c's queue is empty");
    const home = (await a.cli(['home', 'acme.test'])).stdout;
    assert.match(home, /acme\.test -> [ab]\n/, 'the domain has a new home');
    const st = await a.cli(['status']);
    assert.match(st.stdout, /^c\s+draining/m);
    await arrived(sink, 3);
    // The customer collects at any node: the held mail, once.
    assert.deepEqual(await collectSubjects(b), ['held1', 'held2', 'held3']);
    await eventually('nothing queued anywhere', async () => {
      for (const n of [a, b, cc]) if ((await n.status()).messages !== 0) return false;
      return true;
    });
    assert.deepEqual(sink.transactions.map((t) => subjectOf(t.data)).sort(), ['far1', 'far2', 'far3']);
  });

  test('--stop ends the drain: the node delivers its own mail again', async () => {
    const cc = c.node('c');
    const r = await cc.cli(['drain', '--stop']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^not draining/);
    await sendMail(cc.smtpPort, { from: 'x@outside.test', to: ['u@near.test'], subject: 'direct' });
    await arrived(near, 1);
    assert.equal(near.transactions[0]!.helo, 'c.cluster.test', 'delivered by c itself, not handed to a peer');
  });

  test('a drain interrupted by a SIGKILL resumes when the node starts again', async () => {
    const [a, b, cc] = [c.node('a'), c.node('b'), c.node('c')];
    await sink!.close();
    sink = undefined;
    await a.stop();
    await b.stop();
    for (let i = 1; i <= 2; i++)
      await sendMail(cc.smtpPort, { from: 'x@outside.test', to: ['u@far.test'], subject: `late${i}` });
    await eventually('deferred at c', async () => retried((await cc.status()).lanes) === 2);
    const r = await cc.cli(['drain']);
    assert.match(r.stdout, /draining to none alive: 2 message\(s\) left/);
    await cc.kill();
    await cc.start();
    assert.match(
      (await cc.cli(['drain', '--status'])).stdout,
      /^draining/,
      'still draining after the restart',
    );
    await a.start();
    await b.start();
    await eventually('c empty', async () => (await cc.status()).messages === 0);
    const total = (await a.status()).messages + (await b.status()).messages;
    assert.equal(total, 2, 'both messages handed over, once');
  });

  test('the node receiving a drain SIGKILLed in the middle of it: every message arrives, once but for those in flight', async () => {
    const [a, b, cc] = [c.node('a'), c.node('b'), c.node('c')];
    assert.equal((await cc.cli(['drain', '--stop'])).code, 0);
    const N = 60;
    const body = `${'y'.repeat(998)}\r\n`.repeat(80);
    await a.stop();
    await b.stop();
    for (let i = 0; i < N; i++)
      await sendMail(cc.smtpPort, { from: 'x@outside.test', to: ['u@far.test'], subject: `k${i}`, body });
    await eventually('deferred at c', async () => retried((await cc.status()).lanes) === N);
    sink = await SmtpSink.start({ port: farPort });
    await a.start();
    await b.start();
    await c.converged();
    // far.test's mail all goes to one peer (rendezvous of its destination): that one dies.
    const receiver = c.node(rendezvous('far.test', ['a', 'b'])!);
    assert.equal((await cc.cli(['drain'])).code, 0);
    await eventually('the drain under way', async () => N - (await cc.status()).messages >= 8, 60_000, 10);
    await receiver.kill();
    const left = (await cc.status()).messages;
    assert.ok(left > 0, 'the kill landed mid-drain');
    await receiver.start();
    // Its heartbeat back, the rest goes to it at once (not after the dead-host mark of its
    // downtime expires, a minute later).
    await eventually('c empty', async () => (await cc.status()).messages === 0, 30_000);
    const want = Array.from({ length: N }, (_, i) => `k${i}`);
    await eventually(
      'every drained message at the destination',
      async () => {
        const got = new Set(sink!.transactions.map((t) => subjectOf(t.data)));
        return want.every((s) => got.has(s));
      },
      60_000,
    );
    const drained = sink.transactions.map((t) => subjectOf(t.data)).filter((s) => s.startsWith('k'));
    const dups = drained.length - new Set(drained).size;
    // The receiver's own deliveries in flight at its kill may be repeated (at most two per
    // connection, two connections); c's handover none.
    assert.ok(dups <= 4, `${dups} duplicates`);
    // Left queued: only the previous test's two messages, waiting for their retry (1 h).
    await eventually(
      'the drained mail gone from the receiver too',
      async () => (await a.status()).messages + (await b.status()).messages === 2,
      60_000,
    );
  });
});
