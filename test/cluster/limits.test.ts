// Limits counted over the whole cluster: an AUTH brute force spread over three nodes is blocked
// after the cluster-wide count of failures (no node alone saw that many); ETRN requests and ODMR
// AUTH commands of one client, a destination's message rate and its outbound connections are
// counted over every node.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cramMd5Response } from '../../src/smtp/client/auth.js';
import { SmtpChat } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { redisMissing } from '../support/redis.js';
import { acmeAccount, arrived, eventually, subjectOf, TestCluster } from './kit.js';
import { sendMail } from '../support/inject.js';

const plain = (user: string, pass: string) => Buffer.from(`\0${user}\0${pass}`).toString('base64');

/** A client session from `from` (each test its own loopback address: one client, many nodes). */
async function session(port: number, from: string): Promise<SmtpChat> {
  const chat = await SmtpChat.connect(port, '127.0.0.1', from);
  await chat.read(1);
  await chat.ask('EHLO attacker.test\r\n');
  return chat;
}

const ATTACKER = '127.0.0.2';

describe('cluster: shared limits', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let sink: SmtpSink;

  before(async () => {
    sink = await SmtpSink.start();
    c = await TestCluster.start(['a', 'b', 'c'], {
      smtp:
        'auth_max_failures = 5\nauth_failure_delay = "0s"\nauth_failure_delay_max = "0s"\nauth_block_time = "10m"\n' +
        'relay_domains = ["rated.test"]',
      cluster: 'message_rate_per_destination = "4/s,max_burst=1"',
      odmr: 'auth_per_minute = 3',
      toml: `
[[route]]
domain = "rated.test"
host = "127.0.0.1:${sink.port}"

[[user]]
name = "alice"
password = "right-password-1"

[[etrn]]
domain = "branch.test"
host = "127.0.0.1:9"

[etrn_limits]
requests_per_client = 4

${acmeAccount('acme.test')}`,
    });
    await c.converged();
  });
  after(async () => {
    await c?.stopAll();
    await sink?.close();
  });

  test('an AUTH brute force over three nodes is blocked after the cluster-wide count', async () => {
    const ports = ['a', 'b', 'c', 'a', 'b'].map((n) => c.node(n).smtpPort);
    const replies: string[] = [];
    for (const [i, port] of ports.entries()) {
      const chat = await session(port, ATTACKER);
      const r = await chat.ask(`AUTH PLAIN ${plain('alice', `guess-${i}`)}\r\n`, 1);
      replies.push(r[0] ?? '');
      if (i === ports.length - 1) {
        // The fifth failure in the cluster: blocked at once, connection closed.
        const [blocked = ''] = await chat.read(1);
        assert.match(blocked, /^421 4\.7\.0 /);
        await chat.waitClosed();
      }
      chat.close();
    }
    for (const r of replies) assert.match(r, /^535 5\.7\.8 /);
    // Now blocked at every node, even node c that saw a single failure — the right password too.
    for (const n of ['c', 'a', 'b']) {
      const chat = await session(c.node(n).smtpPort, ATTACKER);
      const [r = ''] = await chat.ask(`AUTH PLAIN ${plain('alice', 'right-password-1')}\r\n`);
      assert.match(r, /^421 4\.7\.0 /, `node ${n}`);
      chat.close();
    }
  });

  test("a client's ETRN requests are counted over every node", async () => {
    const codes: string[] = [];
    for (const n of ['a', 'b', 'c', 'a', 'b', 'c']) {
      const chat = await session(c.node(n).smtpPort, '127.0.0.3');
      const [r = ''] = await chat.ask('ETRN branch.test\r\n');
      codes.push(r.slice(0, 3));
      chat.close();
    }
    assert.deepEqual(codes, ['251', '251', '251', '251', '458', '458']);
  });

  test("a client's ODMR AUTH commands are counted over every node", async () => {
    const replies: string[] = [];
    for (const n of ['a', 'b', 'c', 'a']) {
      const chat = await SmtpChat.connect(c.node(n).odmrPort, '127.0.0.1', '127.0.0.6');
      await chat.read(1);
      await chat.ask('EHLO customer.test\r\n');
      // CRAM-MD5: PLAIN needs TLS on the ODMR listener.
      const [r = ''] = await chat.ask('AUTH CRAM-MD5\r\n');
      if (r.startsWith('334 ')) {
        const [done = ''] = await chat.ask(`${cramMd5Response('acme', 'acme-secret-123', r.slice(4))}\r\n`);
        replies.push(done.slice(0, 3));
      } else replies.push(r.slice(0, 3));
      chat.close();
    }
    // 3 a minute for the cluster: the fourth, at a node that saw only one, is refused.
    assert.deepEqual(replies, ['235', '235', '235', '421']);
  });

  test('the message rate of a destination is kept over the whole cluster', async () => {
    // 9 messages taken by 3 nodes at once, 4/s with no burst for the cluster: about 2 s; each
    // node counting alone would send its 3 in half a second.
    const t0 = Date.now();
    await Promise.all(
      ['a', 'b', 'c'].flatMap((n) =>
        [1, 2, 3].map((i) =>
          sendMail(c.node(n).smtpPort, { from: 'x@outside.test', to: [`u@rated.test`], subject: `${n}${i}` }),
        ),
      ),
    );
    await arrived(sink, 9);
    const ms = Date.now() - t0;
    assert.ok(ms >= 1_700, `9 messages at 4/s took ${ms} ms`);
    assert.equal(sink.transactions.length, 9);
  });

  test('without Redis the AUTH block is counted by each node alone, and shared again once it is back', async () => {
    /** Failed AUTHs from `from` at the nodes, in turn; the reply each got. */
    const fail = async (nodes: string[], from: string): Promise<string[]> => {
      const out: string[] = [];
      for (const [i, n] of nodes.entries()) {
        const chat = await session(c.node(n).smtpPort, from);
        const [r = ''] = await chat.ask(`AUTH PLAIN ${plain('alice', `guess-${i}`)}\r\n`);
        out.push(r.slice(0, 3));
        chat.close();
      }
      return out;
    };
    /** How many times node n logged `what` so far. */
    const said = (n: string, what: string) =>
      (c.node(n).daemon?.stdout() ?? '').split('\n').filter((l) => l.includes(what)).length;
    const DOWN = 'cluster: Redis unreachable';
    const UP = 'shared limits in force again';
    const before = Object.fromEntries(['a', 'b', 'c'].map((n) => [n, [said(n, DOWN), said(n, UP)]]));
    await c.redis.kill();
    // Each node notices at its next heartbeat.
    for (const n of ['a', 'b', 'c'])
      await eventually(`${n} on local limits`, async () => said(n, DOWN) > before[n]![0]!);
    // Four failures at a and four at b: no node reached its 5 alone, so none blocks.
    assert.deepEqual(await fail(['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b'], '127.0.0.7'), Array(8).fill('535'));
    // The fifth at a blocks at a only.
    const [fifth = ''] = await fail(['a'], '127.0.0.7');
    assert.equal(fifth, '535');
    const atA = await session(c.node('a').smtpPort, '127.0.0.7');
    assert.match((await atA.ask(`AUTH PLAIN ${plain('alice', 'right-password-1')}\r\n`))[0] ?? '', /^421 /);
    atA.close();
    const atC = await session(c.node('c').smtpPort, '127.0.0.7');
    assert.match((await atC.ask(`AUTH PLAIN ${plain('alice', 'right-password-1')}\r\n`))[0] ?? '', /^235 /);
    atC.close();
    await c.redis.start();
    for (const n of ['a', 'b', 'c'])
      await eventually(`${n} shared again`, async () => said(n, UP) > before[n]![1]!);
    // Shared again: a fresh brute force over the nodes is blocked after the cluster-wide five.
    const again = await fail(['a', 'b', 'c', 'a', 'b', 'c'], '127.0.0.8');
    assert.deepEqual(again.slice(0, 5), ['535', '535', '535', '535', '535']);
    assert.equal(again[5], '421', 'the sixth, at c, is refused: blocked over the cluster');
  });
});

describe('cluster: outbound connections per destination', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let sink: SmtpSink;

  before(async () => {
    // Slow replies keep each connection open long enough to be seen.
    sink = await SmtpSink.start({ delayMs: 100 });
    c = await TestCluster.start(['a', 'b'], {
      smtp: 'relay_domains = ["one-at-a-time.test"]',
      cluster: 'connections_per_destination = 1',
      toml: `
[queue]
retry = ["2s"]

[[route]]
domain = "one-at-a-time.test"
host = "127.0.0.1:${sink.port}"
`,
    });
    await c.converged();
  });
  after(async () => {
    await c?.stopAll();
    await sink?.close();
  });

  test('one connection at a time to the destination over the cluster; every message once', async () => {
    let peak = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        peak = Math.max(peak, sink.openConnections);
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await Promise.all(
      ['a', 'b'].flatMap((n) =>
        [1, 2].map((i) =>
          sendMail(c.node(n).smtpPort, {
            from: 'x@outside.test',
            to: ['u@one-at-a-time.test'],
            subject: `${n}${i}`,
          }),
        ),
      ),
    );
    await arrived(sink, 4, 60_000);
    watching = false;
    await watch;
    assert.deepEqual(sink.transactions.map((t) => subjectOf(t.data)).sort(), ['a1', 'a2', 'b1', 'b2']);
    assert.equal(peak, 1, 'never two connections open at once');
    assert.ok(sink.connections >= 2, 'each node opened its own in turn');
  });
});
