// ATRN at any node: three real nodes and a real Redis. An ODMR account's domains are homed on
// different nodes; mail for them is accepted at the others. A customer that connects to a node
// that is not the home (logmta's own ODMR customer, then fetchmail in ODMR mode) receives every
// message exactly once, in one session: the node it reached splices it to each home in turn and
// serves what it holds itself last.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { collect } from '../../src/odmr/index.js';
import { hasTool } from '../support/daemon.js';
import { redisMissing } from '../support/redis.js';
import { SmtpSink } from '../support/sink.js';
import { runFetchmail } from '../interop/fetchmail-support.js';
import {
  acmeAccount,
  arrived,
  TestCluster,
  type TestNode,
  eventually,
  memoryStore,
  subjectOf,
} from './kit.js';
import { sendMail } from '../support/inject.js';

const TOML = acmeAccount('one.test', 'two.test', 'three.test');

describe('cluster: ATRN at any node', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let a: TestNode;
  let b: TestNode;
  let cc: TestNode;

  before(async () => {
    c = await TestCluster.start(['a', 'b', 'c'], { toml: TOML });
    await c.converged();
    [a, b, cc] = [c.node('a'), c.node('b'), c.node('c')];
    const homes: Array<[string, string]> = [
      ['one.test', 'a'],
      ['two.test', 'b'],
      ['three.test', 'c'],
    ];
    for (const [d, n] of homes) assert.equal((await a.cli(['home', d, n])).code, 0);
  });
  after(() => c?.stopAll());

  /** Sends the round of mail: one.test (home a) taken at b and c, two.test at c, three.test at a. */
  async function sendRound(tag: string): Promise<string[]> {
    const plan: Array<[TestNode, string, string]> = [
      [b, 'one.test', `${tag}-1b`],
      [cc, 'one.test', `${tag}-1c`],
      [cc, 'two.test', `${tag}-2c`],
      [a, 'three.test', `${tag}-3a`],
    ];
    for (const [n, d, s] of plan)
      await sendMail(n.smtpPort, { from: 'x@outside.test', to: [`u@${d}`], subject: s });
    await eventually('the mail held at its homes', async () => {
      const [h1, h2, h3] = [await a.held('one.test'), await b.held('two.test'), await cc.held('three.test')];
      return h1 === 2 && h2 === 1 && h3 === 1;
    });
    return plan.map((p) => p[2]).sort();
  }

  test('a customer at a node that is not the home gets every message once, in one session', async () => {
    const want = await sendRound('r1');
    const store = memoryStore();
    const r = await collect({
      host: '127.0.0.1',
      port: cc.odmrPort,
      user: 'acme',
      password: 'acme-secret-123',
      session: { hostname: 'customer.test' },
      hooks: store.hooks,
      timeoutMs: 15_000,
    });
    assert.equal(r.status, 'received');
    assert.deepEqual(store.got.map((m) => subjectOf(m.data)).sort(), want, 'each message exactly once');
    await eventually('every lane empty', async () => {
      const s = [await a.held('one.test'), await b.held('two.test'), await cc.held('three.test')];
      return s.every((x) => x === 0);
    });
  });

  test('a request for domains homed elsewhere only is served from those homes', async () => {
    await sendMail(cc.smtpPort, { from: 'x@outside.test', to: ['u@one.test'], subject: 'only-one' });
    await eventually('held at a', async () => (await a.held('one.test')) === 1);
    const store = memoryStore();
    const r = await collect({
      host: '127.0.0.1',
      port: b.odmrPort,
      user: 'acme',
      password: 'acme-secret-123',
      domains: ['one.test'],
      session: { hostname: 'customer.test' },
      hooks: store.hooks,
      timeoutMs: 15_000,
    });
    assert.equal(r.status, 'received');
    assert.deepEqual(
      store.got.map((m) => subjectOf(m.data)),
      ['only-one'],
    );
    const none = await collect({
      host: '127.0.0.1',
      port: b.odmrPort,
      user: 'acme',
      password: 'acme-secret-123',
      session: { hostname: 'customer.test' },
      hooks: memoryStore().hooks,
      timeoutMs: 15_000,
    });
    assert.equal(none.status, 'no-mail', 'nothing anywhere: 453');
  });

  test('fetchmail in ODMR mode against a node that is not the home gets everything once', {
    skip: hasTool('fetchmail') ? false : 'fetchmail is not installed',
  }, async () => {
    const want = await sendRound('r2');
    const sink = await SmtpSink.start();
    try {
      const run = await runFetchmail(
        `poll 127.0.0.1 port ${b.odmrPort} protocol ODMR\n` +
          `  user "acme" password "acme-secret-123" fetchdomains one.test,two.test,three.test smtphost 127.0.0.1/${sink.port}\n`,
      );
      assert.match(run.output, /ATRN one\.test,two\.test,three\.test/, run.output);
      await arrived(sink, 4);
      assert.deepEqual(sink.transactions.map((t) => subjectOf(t.data)).sort(), want, run.output);
      assert.equal(run.code, 0, run.output);
    } finally {
      await sink.close();
    }
  });
});
