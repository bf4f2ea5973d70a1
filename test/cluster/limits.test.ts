// Limits counted over the whole cluster: an AUTH brute force spread over three nodes is blocked
// after the cluster-wide count of failures (no node alone saw that many), and ETRN requests of
// one client are counted over every node.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SmtpChat } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { redisMissing } from '../support/redis.js';
import { arrived, TestCluster } from './kit.js';
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
`,
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
});
