// A Sentinel failover under a running cluster, as an operator lives it: two nodes reach Redis
// through a Sentinel that watches a master and its replica (with a password). The master is
// SIGKILLed; the Sentinel promotes the replica. Mail sent while that happens and after it reaches
// its domain's home, exactly once; the nodes find the new master by themselves (no restart, no
// configuration change): they stay alive in `cluster status`, and a home can be moved again,
// which needs a write to the new master.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { RedisServer, redisMissing } from '../support/redis.js';
import { toolPath } from '../support/tools.js';
import { acmeAccount, TestCluster } from './kit.js';

const PASSWORD = 'redis-failover-password';
const MASTER = 'logmta-failover';

async function until(
  what: string,
  ok: () => Promise<boolean>,
  ms: number,
  logs: () => string,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`${what} within ${ms} ms\n${logs()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sends one mail for the held domain through `port`; it must be accepted (250). */
async function send(port: number, subject: string): Promise<void> {
  const r = await sendMail(port, { from: 'x@o.test', to: ['u@acme.test'], subject });
  assert.equal(r.recipients[0]?.status, 'delivered', `${subject}: ${JSON.stringify(r.recipients)}`);
}

/** `redis-cli` against one server, with the password. */
function redisCli(port: number, ...args: string[]): string {
  const r = spawnSync(
    toolPath('redis-cli') ?? 'redis-cli',
    ['-p', String(port), '--no-auth-warning', '-a', PASSWORD, ...args],
    {
      encoding: 'utf8',
    },
  );
  return r.stdout;
}

describe('cluster: the Redis master fails over to its replica', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let replica: RedisServer | undefined;
  let sentinel: Awaited<ReturnType<RedisServer['sentinel']>> | undefined;

  before(async () => {
    let sentinelPort = 0;
    c = await TestCluster.start([], {
      toml: acmeAccount('acme.test'),
      redisPassword: PASSWORD,
      redis: () => `redis = ["127.0.0.1:${sentinelPort}"]\nsentinel_master = "${MASTER}"`,
    });
    replica = await RedisServer.start({ password: PASSWORD, replicaOf: c.redis.port });
    sentinel = await c.redis.sentinel(MASTER);
    sentinelPort = sentinel.port;
    // The Sentinel learns of replicas from the master's INFO (every 10 s at first).
    await sentinel.waitFor('+slave ', 30_000);
    await c.add('a');
    await c.add('b');
    await c.converged();
  });
  after(async () => {
    await c?.stopAll();
    await sentinel?.stop();
    await replica?.stop();
  });

  test('mail sent before, during and after the failover reaches its home once; the nodes carry on', async () => {
    const [a, b] = [c.node('a'), c.node('b')];
    assert.equal((await b.cli(['home', 'acme.test', 'a'])).code, 0);
    await send(b.smtpPort, 'before');
    await until(
      'the first mail at its home',
      async () => (await a.held('acme.test')) === 1,
      20_000,
      () => c.logs(),
    );

    // Everything written so far is on the replica before the master goes (WAIT: 1 replica).
    assert.equal(redisCli(c.redis.port, 'WAIT', '1', '5000').trim(), '1');
    await c.redis.kill();
    await send(b.smtpPort, 'during');
    await sentinel!.waitFor('+switch-master', 30_000);
    assert.match(redisCli(replica!.port, 'ROLE'), /^master/);

    await send(b.smtpPort, 'after');
    await until(
      'all three mails at their home',
      async () => (await a.held('acme.test')) === 3,
      30_000,
      () => c.logs(),
    );

    // The nodes write to the new master: a home can be moved, and they are seen alive.
    await until(
      'a home moved through the new master',
      async () => (await a.cli(['home', 'acme.test', 'b'])).code === 0,
      20_000,
      () => c.logs(),
    );
    await c.converged(20_000);
    await send(a.smtpPort, 'moved');
    // The held mail at a moves to the new home too: four at b, none left at a, none twice.
    await until(
      'the held mail at the new home',
      async () => (await b.held('acme.test')) === 4 && (await a.held('acme.test')) === 0,
      30_000,
      () => c.logs(),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await b.held('acme.test'), 4);
    assert.equal(await a.held('acme.test'), 0);
  });
});
