// ETRN at any node: three real nodes and a real Redis; an ETRN domain homed at node a whose
// customer host is down at first. The customer asks a node that is not the home: the answer is
// the count of what waits for it (at the home and still at that node), and every message —
// including one that was still waiting at the node asked — reaches the customer exactly once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { closedPort, SmtpChat } from '../support/daemon.js';
import { redisMissing } from '../support/redis.js';
import { SmtpSink } from '../support/sink.js';
import { arrived, TestCluster, eventually } from './kit.js';
import { sendMail } from '../support/inject.js';

describe('cluster: ETRN at a node that is not the home', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let customerPort: number;
  let sink: SmtpSink | undefined;

  before(async () => {
    customerPort = await closedPort();
    c = await TestCluster.start(['a', 'b', 'c'], {
      toml: `
[[etrn]]
domain = "branch.test"
host = "127.0.0.1:${customerPort}"
probe_interval = "1h"
`,
    });
    await c.converged();
    assert.equal((await c.node('a').cli(['home', 'branch.test', 'a'])).code, 0);
  });
  after(async () => {
    await sink?.close();
    await c?.stopAll();
  });

  test('delivers everything held for the domain, including mail still waiting at the node asked', async () => {
    const [a, b, cc] = [c.node('a'), c.node('b'), c.node('c')];
    // Customer offline: mail taken at b and c goes home to a and is held there.
    for (const [n, s] of [
      [b, 'b1'],
      [b, 'b2'],
      [cc, 'c1'],
    ] as const)
      await sendMail(n.smtpPort, { from: 'x@outside.test', to: ['user@branch.test'], subject: s });
    await eventually('3 held at a', async () => (await a.held('branch.test')) === 3);
    // The home goes down; one more message waits at c.
    await a.stop();
    await sendMail(cc.smtpPort, { from: 'x@outside.test', to: ['user@branch.test'], subject: 'c2' });
    await eventually('1 held at c', async () => (await cc.held('branch.test')) === 1);
    await a.start();
    // The customer comes online and asks c.
    sink = await SmtpSink.start({ port: customerPort });
    const chat = await SmtpChat.connect(cc.smtpPort);
    await chat.read(1);
    await chat.ask('EHLO customer.branch.test\r\n');
    const [reply = ''] = await chat.ask('ETRN branch.test\r\n');
    chat.close();
    const m = /^253 2\.0\.0 OK, (\d+) pending messages for node branch\.test started/.exec(reply);
    assert.ok(m, reply);
    assert.ok(Number(m[1]) >= 3, `count ${m[1]} covers at least what the home held`);
    await arrived(sink, 4);
    await eventually('every node empty', async () => {
      for (const n of [a, b, cc]) if ((await n.status()).messages !== 0) return false;
      return true;
    });
    const subjects = sink.transactions.map((t) => /Subject: (\S+)/.exec(t.data.toString())?.[1]).sort();
    assert.deepEqual(subjects, ['b1', 'b2', 'c1', 'c2'], 'each message exactly once');
  });

  test('with nothing held anywhere the answer is 251', async () => {
    const chat = await SmtpChat.connect(c.node('b').smtpPort);
    await chat.read(1);
    await chat.ask('EHLO customer.branch.test\r\n');
    const [reply = ''] = await chat.ask('ETRN branch.test\r\n');
    chat.close();
    assert.match(reply, /^251 /);
  });
});
