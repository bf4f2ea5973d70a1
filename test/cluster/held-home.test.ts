// Held mail goes home: three real `logmta serve` nodes and a real Redis. Mail for an ODMR domain
// accepted at the nodes that are not its home ends up held at the home, exactly once; while the
// home is down the other nodes keep it (acknowledged, held for the domain), and once the home
// is back it is transferred. Also the operator's `logmta cluster status` and `home`.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { redisMissing } from '../support/redis.js';
import { acmeAccount, TestCluster, eventually } from './kit.js';
import { sendMail } from '../support/inject.js';

const TOML = acmeAccount('acme.test');

describe('cluster: held mail goes home', { skip: redisMissing() }, () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.start(['a', 'b', 'c'], { toml: TOML });
    await c.converged();
    const r = await c.node('b').cli(['home', 'acme.test', 'a']);
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => c?.stopAll());

  test('cluster status lists every node alive with its addresses', async () => {
    const r = await c.node('c').cli(['status']);
    assert.equal(r.code, 0, r.stderr);
    for (const n of ['a', 'b', 'c']) {
      assert.match(r.stdout, new RegExp(`^${n}\\s+alive\\s+127\\.0\\.0\\.1:${c.node(n).smtpPort}`, 'm'));
    }
    assert.match(r.stdout, /acme\.test -> a/);
  });

  test('mail accepted at the other nodes is held once, at the home', async () => {
    const [a, b, cc] = [c.node('a'), c.node('b'), c.node('c')];
    for (const [n, i] of [
      [b, 1],
      [b, 2],
      [cc, 3],
      [cc, 4],
    ] as const)
      await sendMail(n.smtpPort, { from: 'sender@outside.test', to: ['user@acme.test'], subject: `m${i}` });
    await eventually(
      '4 pieces held at a and nothing left at b and c',
      async () =>
        (await a.held('acme.test')) === 4 &&
        (await b.status()).messages === 0 &&
        (await cc.status()).messages === 0,
    );
  });

  test('with the home down mail waits at the node that took it, and moves when the home is back', async () => {
    const [a, b] = [c.node('a'), c.node('b')];
    const before = await a.held('acme.test');
    await a.stop();
    for (let i = 0; i < 3; i++)
      await sendMail(b.smtpPort, {
        from: 'sender@outside.test',
        to: ['user@acme.test'],
        subject: `down${i}`,
      });
    await eventually('3 pieces held at b', async () => (await b.held('acme.test')) === 3);
    const r = await b.cli(['status']);
    assert.match(r.stdout, /^a\s+dead/m);
    await a.start();
    // b forgets each message once a's 250 for it is in (a holds it a moment before that).
    await eventually(
      'the held mail moved to a',
      async () => (await a.held('acme.test')) === before + 3 && (await b.status()).messages === 0,
    );
    assert.equal(await a.held('acme.test'), before + 3, 'each message once');
  });
});
