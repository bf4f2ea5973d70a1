// A node SIGKILLed in the middle of a transfer of held mail to its home: first the sending node,
// then the home while it receives. Nothing acknowledged is lost; a message can arrive twice only
// if it was in flight at the kill (at most one per connection: two connections here), and the
// customer then collects everything from the home.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { redisMissing } from '../support/redis.js';
import { acmeAccount, collectSubjects, eventually, TestCluster } from './kit.js';
import { sendMail } from '../support/inject.js';

const N = 80;
const BODY = `${'x'.repeat(998)}\r\n`.repeat(100);

describe('cluster: a node killed during a transfer', { skip: redisMissing() }, () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.start(['a', 'b'], {
      toml: `
[delivery]
concurrency_per_destination = 2

${acmeAccount('acme.test')}`,
    });
    await c.converged();
    assert.equal((await c.node('a').cli(['home', 'acme.test', 'a'])).code, 0);
  });
  after(() => c?.stopAll());

  test('no loss, and duplicates only of the messages in flight', async () => {
    const [a, b] = [c.node('a'), c.node('b')];
    await a.stop();
    for (let i = 0; i < N; i++)
      await sendMail(b.smtpPort, {
        from: 'x@outside.test',
        to: ['u@acme.test'],
        subject: `m${i}`,
        body: BODY,
      });
    await eventually('all held at b', async () => (await b.held('acme.test')) === N);
    // The home returns; b starts moving the mail; b dies mid-way.
    await a.start();
    await eventually('the transfer under way', async () => (await a.held('acme.test')) >= 10, 60_000, 10);
    await b.kill();
    const atKill = await a.held('acme.test');
    assert.ok(atKill < N, `the kill landed mid-transfer (${atKill} of ${N} moved)`);
    await b.start();
    // b goes on; now the home dies while receiving.
    await eventually('more moved', async () => (await a.held('acme.test')) >= atKill + 10, 60_000, 10);
    await a.kill();
    await a.start();
    await eventually('everything at a, nothing left at b', async () => (await b.status()).messages === 0);
    const subjects = await collectSubjects(a);
    const distinct = new Set(subjects);
    for (let i = 0; i < N; i++) assert.ok(distinct.has(`m${i}`), `m${i} was not lost`);
    const dups = subjects.length - distinct.size;
    assert.ok(dups <= 4, `${dups} duplicates: at most one per connection in flight at each of the two kills`);
  });
});
