// [cluster] with Redis found through a Sentinel (a list in `redis` and `sentinel_master`), with
// the Redis password read from a file: two real nodes join, a domain gets its home, held mail goes
// there, and `logmta cluster status` reads the cluster through the Sentinel too.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { redisMissing } from '../support/redis.js';
import { acmeAccount, TestCluster } from './kit.js';

describe('cluster: Redis through a Sentinel', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let stopSentinel: (() => Promise<void>) | undefined;

  before(async () => {
    let sentinelPort = 0;
    c = await TestCluster.start([], {
      toml: acmeAccount('acme.test'),
      redisPassword: 'redis-test-password',
      redis: () => `redis = ["127.0.0.1:${sentinelPort}"]\nsentinel_master = "logmta-test"`,
    });
    const s = await c.redis.sentinel('logmta-test');
    sentinelPort = s.port;
    stopSentinel = s.stop;
    await c.add('a');
    await c.add('b');
    await c.converged();
  });
  after(async () => {
    await c?.stopAll();
    await stopSentinel?.();
  });

  test('nodes join, a home is stored and held mail reaches it', async () => {
    const [a, b] = [c.node('a'), c.node('b')];
    assert.equal((await b.cli(['home', 'acme.test', 'a'])).code, 0);
    await sendMail(b.smtpPort, { from: 'x@o.test', to: ['u@acme.test'] });
    const end = Date.now() + 20_000;
    while ((await a.held('acme.test')) !== 1) {
      if (Date.now() > end) throw new Error('the mail did not reach its home');
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await a.cli(['status']);
    assert.match(r.stdout, /^a\s+alive/m);
    assert.match(r.stdout, /^b\s+alive/m);
  });
});
