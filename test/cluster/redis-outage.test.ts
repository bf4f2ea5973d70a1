// Redis killed in the middle of a load run over three real nodes: every message acknowledged
// before, during and after the outage is delivered (routed mail at the sink, ODMR mail held at
// its home), acceptance never stops, the shared limits fall back to each node counting alone
// (logged once, exported as logmta_cluster_redis_up 0) and are shared again once Redis is back
// — even though the restarted Redis is empty (the homes are written back from the nodes).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SmtpChat } from '../support/daemon.js';
import { redisMissing } from '../support/redis.js';
import { SmtpSink } from '../support/sink.js';
import { acmeAccount, TestCluster, eventually } from './kit.js';
import { sendMail } from '../support/inject.js';

async function etrnCodes(port: number, n: number, from: string): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const chat = await SmtpChat.connect(port, '127.0.0.1', from);
    await chat.read(1);
    await chat.ask('EHLO client.test\r\n');
    out.push(((await chat.ask('ETRN branch.test\r\n'))[0] ?? '').slice(0, 3));
    chat.close();
  }
  return out;
}

describe('cluster: Redis killed during a load run', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let sink: SmtpSink;

  before(async () => {
    sink = await SmtpSink.start();
    c = await TestCluster.start(['a', 'b', 'c'], {
      admin: true,
      // A loaded machine must not make a slow answer look like a second outage.
      cluster: 'redis_timeout = "2s"',
      smtp: 'relay_domains = ["load.test"]',
      toml: `
[[route]]
domain = "load.test"
host = "127.0.0.1:${sink.port}"

${acmeAccount('acme.test')}
[[etrn]]
domain = "branch.test"
host = "127.0.0.1:9"
probe_interval = "1h"

[etrn_limits]
requests_per_client = 2
`,
    });
    await c.converged();
    assert.equal((await c.node('a').cli(['home', 'acme.test', 'a'])).code, 0);
    assert.equal((await c.node('a').cli(['home', 'branch.test', 'a'])).code, 0);
  });
  after(async () => {
    await c?.stopAll();
    await sink?.close();
  });

  test('no acknowledged message is lost, acceptance goes on, limits fall back and recover', async () => {
    const nodes = ['a', 'b', 'c'].map((n) => c.node(n));
    const acked = { load: new Set<string>(), acme: 0 };
    let stop = false;
    let failures = 0;
    // Three senders, one per node, each sending until told to stop.
    const senders = nodes.map(async (n, k) => {
      for (let i = 0; !stop; i++) {
        const subject = `${n.name}-${i}`;
        const odmr = i % 4 === 0;
        try {
          await sendMail(n.smtpPort, {
            from: 'x@outside.test',
            to: [odmr ? 'u@acme.test' : 'u@load.test'],
            subject,
          });
          if (odmr) acked.acme++;
          else acked.load.add(subject);
        } catch {
          failures++;
        }
        if (k === 0 && i > 400) break;
      }
    });
    const total = () => acked.load.size + acked.acme;
    await eventually('30 messages acknowledged', async () => total() >= 30);
    await c.redis.kill();
    const atKill = total();
    await eventually('30 more acknowledged without Redis', async () => total() >= atKill + 30);
    // Without Redis each node counts ETRN requests alone (2 per client per node).
    for (const n of nodes) {
      await eventually(`${n.name} to notice`, async () => (await n.metric('logmta_cluster_redis_up')) === 0);
      assert.deepEqual(await etrnCodes(n.smtpPort, 3, '127.0.0.4'), ['251', '251', '458'], n.name);
    }
    await c.redis.start();
    const atBack = total();
    await eventually('30 more acknowledged with Redis back', async () => total() >= atBack + 30);
    stop = true;
    await Promise.all(senders);
    assert.equal(failures, 0, 'acceptance never stopped');
    for (const n of nodes)
      await eventually(
        `${n.name} shared again`,
        async () => (await n.metric('logmta_cluster_redis_up')) === 1,
      );
    // Shared again: one client's ETRN requests are counted over the cluster.
    const shared = [
      ...(await etrnCodes(nodes[0]!.smtpPort, 1, '127.0.0.5')),
      ...(await etrnCodes(nodes[1]!.smtpPort, 1, '127.0.0.5')),
      ...(await etrnCodes(nodes[2]!.smtpPort, 1, '127.0.0.5')),
    ];
    assert.deepEqual(shared, ['251', '251', '458']);
    // Everything acknowledged arrived: routed mail at the sink, ODMR mail held at its home.
    await eventually('every routed message at the sink', async () => {
      const got = new Set(sink.transactions.map((t) => /Subject: (\S+)/.exec(t.data.toString())?.[1] ?? ''));
      return [...acked.load].every((s) => got.has(s));
    });
    await eventually('every ODMR message held at the home', async () => {
      const queued = await Promise.all(nodes.map(async (n) => (await n.status()).messages));
      return (await nodes[0]!.held('acme.test')) === acked.acme && queued[1] === 0 && queued[2] === 0;
    });
    for (const n of nodes) {
      const warned = (n.daemon?.stdout() ?? '')
        .split('\n')
        .filter((l) => l.includes('cluster: Redis unreachable'));
      assert.equal(warned.length, 1, `${n.name} logs the outage once`);
      assert.ok(((await n.metric('logmta_cluster_local_fallbacks_total')) ?? 0) > 0);
    }
    // The restarted (empty) Redis got the homes back from the nodes.
    const r = await nodes[1]!.cli(['home', 'acme.test']);
    assert.match(r.stdout, /acme\.test -> a/);
  });
});
