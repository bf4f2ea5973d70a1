// Nodes started while Redis is down: a node restarted during the outage (it knows the homes from
// its data directory) and a node that never reached Redis at all both start, accept and deliver
// at once; mail for a domain that has no home yet is held where it was taken; when Redis comes
// back both join, the domain gets a home and its mail moves there — every message once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { redisMissing } from '../support/redis.js';
import { SmtpSink } from '../support/sink.js';
import { acmeAccount, arrived, collectSubjects, eventually, subjectOf, TestCluster } from './kit.js';

describe('cluster: nodes started while Redis is down', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let sink: SmtpSink;

  before(async () => {
    sink = await SmtpSink.start();
    c = await TestCluster.start(['a', 'b'], {
      smtp: 'relay_domains = ["out.test"]',
      toml: `
[[route]]
domain = "out.test"
host = "127.0.0.1:${sink.port}"

${acmeAccount('acme.test', 'late.test')}`,
    });
    await c.converged();
    assert.equal((await c.node('a').cli(['home', 'acme.test', 'a'])).code, 0);
    await sendMail(c.node('b').smtpPort, { from: 'x@o.test', to: ['u@acme.test'], subject: 'before' });
    await eventually('the first message at home', async () => (await c.node('a').held('acme.test')) === 1);
  });
  after(async () => {
    await c?.stopAll();
    await sink?.close();
  });

  test('a restarted node and a new node start, accept and deliver without Redis, and join when it is back', async () => {
    const [a, b] = [c.node('a'), c.node('b')];
    await c.redis.kill();
    await b.stop();
    const t0 = Date.now();
    await b.start();
    const n = await c.add('n');
    assert.ok(Date.now() - t0 < 20_000, `two starts without Redis took ${Date.now() - t0} ms`);
    for (const node of [b, n]) {
      await sendMail(node.smtpPort, { from: 'x@o.test', to: ['u@out.test'], subject: `out-${node.name}` });
      await sendMail(node.smtpPort, { from: 'x@o.test', to: ['u@acme.test'], subject: `acme-${node.name}` });
      await sendMail(node.smtpPort, { from: 'x@o.test', to: ['u@late.test'], subject: `late-${node.name}` });
    }
    // Routed mail needs no Redis; b knows acme.test's home from its data directory.
    await arrived(sink, 2);
    assert.deepEqual(sink.transactions.map((t) => subjectOf(t.data)).sort(), ['out-b', 'out-n']);
    await eventually('b sent acme.test home', async () => (await a.held('acme.test')) === 2);
    // The new node has no home for acme.test, and nobody has one for late.test: held where taken.
    assert.equal(await n.held('acme.test'), 1);
    assert.equal(await b.held('late.test'), 1);
    assert.equal(await n.held('late.test'), 1);
    await c.redis.start();
    await c.converged();
    await eventually('acme.test all at a, late.test at its new home, nothing duplicated', async () => {
      if ((await a.held('acme.test')) !== 3) return false;
      const late = await Promise.all([a, b, n].map((x) => x.held('late.test')));
      return late.filter((x) => x > 0).length === 1 && late.reduce((x, y) => x + y, 0) === 2;
    });
    assert.match((await n.cli(['home', 'late.test'])).stdout, /late\.test -> [abn]\n/);
    assert.deepEqual(await collectSubjects(n), ['acme-b', 'acme-n', 'before', 'late-b', 'late-n']);
  });
});
