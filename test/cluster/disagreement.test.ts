// Two nodes that disagree about a domain's home (each thinks it is the other: one missed the
// change and Redis is gone, so it cannot re-read it) must not pass a message back and forth:
// the node a peer hands the mail to holds it, once, instead of sending it back.
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { after, before, describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { redisMissing } from '../support/redis.js';
import { acmeAccount, eventually, TestCluster } from './kit.js';

describe('cluster: nodes that disagree about a home', { skip: redisMissing() }, () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.start(['a', 'b'], {
      toml: acmeAccount('acme.test'),
    });
    await c.converged();
    assert.equal((await c.node('a').cli(['home', 'acme.test', 'a'])).code, 0);
  });
  after(() => c?.stopAll());

  test('mail is held by the node a peer hands it to, not passed back and forth', async () => {
    const [a, b] = [c.node('a'), c.node('b')];
    // The home moves to b in Redis without the notice (as if both nodes had missed it); a restarts
    // and reads it, b goes on believing a: each thinks the other is the home.
    const r = new Redis(c.redis.url);
    await r.hset('logmta:homes', 'acme.test', 'b');
    r.disconnect();
    await a.stop();
    await a.start();
    await c.converged();
    await sendMail(b.smtpPort, { from: 'x@outside.test', to: ['u@acme.test'], subject: 'once' });
    await eventually(
      'held at a or b',
      async () => (await a.held('acme.test')) + (await b.held('acme.test')) === 1,
    );
    // No tight loop: a disagreement costs at most one transfer per few transfer intervals (1 s
    // here), so over 3 s the message is still there, once, held at one of the two, and nothing
    // bounced. (Before, the two passed it back and forth until the hop limit bounced it.)
    await new Promise((r) => setTimeout(r, 3_000));
    const held = (await a.held('acme.test')) + (await b.held('acme.test'));
    const queued = (await a.status()).messages + (await b.status()).messages;
    assert.equal(held, 1, 'held once');
    assert.equal(queued, 1, 'no bounce, no copy');
    assert.match(
      (a.daemon?.stdout() ?? '') + (b.daemon?.stdout() ?? ''),
      /a peer sent mail of a domain homed there; held here/,
    );
  });
});
