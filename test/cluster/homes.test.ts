// Domain homes and the operator's view: three real nodes and a real Redis. A domain nobody homed
// gets a home the first time it is seen (rendezvous over the live nodes), stored in Redis; nodes
// dying and joining never move it. `logmta cluster status` shows every node alive or dead with
// its version, queue and held mail; `cluster home` refuses what is not a cluster domain or node.
// Redis never holds mail, and without Redis the commands say so (exit 69).
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { after, before, describe, test } from 'node:test';
import { rendezvous } from '../../src/cluster/index.js';
import { sendMail } from '../support/inject.js';
import { redisMissing } from '../support/redis.js';
import { acmeAccount, collectSubjects, eventually, TestCluster, type TestNode } from './kit.js';

interface StatusJson {
  nodes: Array<{
    node: string;
    alive: boolean;
    version: string;
    queue: { messages: number };
    held: Record<string, number>;
  }>;
  homes: Record<string, string>;
}

describe('cluster: domain homes and cluster status', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let home: TestNode;
  const sent: string[] = [];

  before(async () => {
    c = await TestCluster.start(['a', 'b', 'c'], {
      toml: acmeAccount('fresh.test'),
    });
    await c.converged();
  });
  after(() => c?.stopAll());

  async function statusJson(n: TestNode): Promise<StatusJson> {
    const r = await n.cli(['status', '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as StatusJson;
  }

  test('a domain first seen gets its home by rendezvous over the live nodes, and keeps it', async () => {
    const want = rendezvous('fresh.test', ['a', 'b', 'c'])!;
    assert.match((await c.node('a').cli(['home', 'fresh.test'])).stdout, /no home yet/);
    for (const n of ['a', 'b', 'c']) {
      const subject = `first-${n}`;
      sent.push(subject);
      await sendMail(c.node(n).smtpPort, { from: 'x@outside.test', to: ['u@fresh.test'], subject });
    }
    home = c.node(want);
    await eventually('all three held at the home, nothing elsewhere', async () => {
      if ((await home.held('fresh.test')) !== 3) return false;
      for (const n of c.nodes.values()) if (n !== home && (await n.status()).messages !== 0) return false;
      return true;
    });
    assert.equal((await c.node('b').cli(['home', 'fresh.test'])).stdout, `fresh.test -> ${want}\n`);
  });

  test('cluster status: every node with its version, queue and held mail', async () => {
    const s = await statusJson(c.node('a'));
    const h = s.nodes.find((n) => n.node === home.name)!;
    await eventually('the home reports its held mail', async () => {
      const x = (await statusJson(c.node('a'))).nodes.find((n) => n.node === home.name)!;
      return x.held['fresh.test'] === 3 && x.queue.messages === 3;
    });
    assert.match(h.version, /^\d+\.\d+\.\d+/);
    const text = (await c.node('a').cli(['status'])).stdout;
    assert.match(text, /^NODE\s+STATE\s+SMTP\s+ODMR\s+VERSION\s+QUEUED\s+HELD\s+LAST SEEN$/m);
    assert.match(text, new RegExp(`^${home.name}\\s+alive\\s+\\S+\\s+\\S+\\s+\\S+\\s+3\\s+3\\s`, 'm'));
    assert.match(text, new RegExp(`fresh\\.test -> ${home.name}  \\(${home.name}=3\\)`));
  });

  test('the home dying and a node joining do not move the domain; its mail waits and follows it', async () => {
    await home.stop();
    const d = await c.add('d');
    const others = [...c.nodes.values()].filter((n) => n !== home);
    await eventually('the home seen dead', async () => {
      const s = await statusJson(d);
      const h = s.nodes.find((n) => n.node === home.name);
      // Dead, and still shown with what it last reported.
      return h !== undefined && !h.alive && h.held['fresh.test'] === 3;
    });
    for (const n of others) {
      const subject = `while-down-${n.name}`;
      sent.push(subject);
      await sendMail(n.smtpPort, { from: 'x@outside.test', to: ['u@fresh.test'], subject });
    }
    await eventually('each held where it was taken', async () => {
      for (const n of others) if ((await n.held('fresh.test')) !== 1) return false;
      return true;
    });
    assert.equal((await d.cli(['home', 'fresh.test'])).stdout, `fresh.test -> ${home.name}\n`);
    assert.match((await d.cli(['status'])).stdout, new RegExp(`^${home.name}\\s+dead`, 'm'));
    await home.start();
    await eventually('everything at the home', async () => {
      if ((await home.held('fresh.test')) !== sent.length) return false;
      for (const n of others) if ((await n.status()).messages !== 0) return false;
      return true;
    });
    assert.equal((await d.cli(['home', 'fresh.test'])).stdout, `fresh.test -> ${home.name}\n`);
    // Collectable from a node that is not the home, each message once.
    assert.deepEqual(await collectSubjects(d), [...sent].sort());
  });

  test('cluster home refuses a domain that is no cluster domain and a node that never joined', async () => {
    const a = c.node('a');
    const notOurs = await a.cli(['home', 'elsewhere.test', 'b']);
    assert.equal(notOurs.code, 1);
    assert.match(notOurs.stderr, /elsewhere\.test is no ETRN or ODMR domain/);
    const noNode = await a.cli(['home', 'fresh.test', 'zz']);
    assert.equal(noNode.code, 1);
    assert.match(noNode.stderr, /no node named "zz"/);
    assert.equal((await a.cli(['home', 'fresh.test'])).stdout, `fresh.test -> ${home.name}\n`);
    const forced = await a.cli(['home', 'elsewhere.test', 'b', '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal((await a.cli(['home', 'elsewhere.test'])).stdout, 'elsewhere.test -> b\n');
  });

  test('Redis holds no mail: no key or value carries a message', async () => {
    const r = new Redis(c.redis.url);
    try {
      const keys = await r.keys('*');
      assert.ok(
        keys.some((k) => k.endsWith('homes')),
        keys.join(' '),
      );
      let all = keys.join('\n');
      for (const k of keys) {
        const type = await r.type(k);
        if (type === 'string') all += await r.get(k);
        else if (type === 'hash') all += JSON.stringify(await r.hgetall(k));
        else if (type === 'zset') all += (await r.zrange(k, 0, -1)).join('\n');
        else if (type === 'set') all += (await r.smembers(k)).join('\n');
        else if (type === 'list') all += (await r.lrange(k, 0, -1)).join('\n');
      }
      for (const s of sent) assert.equal(all.includes(s), false, `${s} found in Redis`);
      assert.equal(/Subject:|x@outside\.test|u@fresh\.test/i.test(all), false, 'no header or address');
    } finally {
      r.disconnect();
    }
  });

  test('without Redis, cluster status and home say it is unreachable (exit 69)', async () => {
    await c.redis.kill();
    const s = await c.node('a').cli(['status']);
    assert.equal(s.code, 69, s.stdout + s.stderr);
    assert.match(s.stderr, /Redis is not reachable/);
    const h = await c.node('a').cli(['home', 'fresh.test', 'b']);
    assert.equal(h.code, 69);
    await c.redis.start();
  });
});
