// The cluster secret authenticates node-to-node SMTP and ODMR: three real nodes and a real Redis.
// A client that does not know the secret cannot pass for a node (535, and no relaying); a node
// configured with another secret cannot hand mail to the home nor collect from it for a customer
// — its mail stays held there, acknowledged, never bounced — and once its secret is fixed the
// mail moves, and the customer gets every message once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cramMd5Response } from '../../src/smtp/client/auth.js';
import { SmtpChat } from '../support/daemon.js';
import { sendMail } from '../support/inject.js';
import { redisMissing } from '../support/redis.js';
import {
  acmeAccount,
  collectBetweenPasses,
  collectSubjects,
  eventually,
  SECRET,
  TestCluster,
} from './kit.js';

const WRONG = 'not-the-cluster-secret-987654321';

/** AUTH CRAM-MD5 as `user` with `secret` at `port`; the reply and the open session. */
async function cram(port: number, user: string, secret: string): Promise<{ reply: string; chat: SmtpChat }> {
  const chat = await SmtpChat.connect(port);
  await chat.read(1);
  await chat.ask('EHLO peer.test\r\n');
  const [challenge = ''] = await chat.ask('AUTH CRAM-MD5\r\n');
  assert.match(challenge, /^334 /);
  const [reply = ''] = await chat.ask(`${cramMd5Response(user, secret, challenge.slice(4))}\r\n`);
  return { reply, chat };
}

describe('cluster: the secret between nodes', { skip: redisMissing() }, () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.start(['a', 'b'], {
      // The misconfigured node retries from 127.0.0.1, the tests' client address too.
      smtp: 'auth_max_failures = 10000\nauth_failure_delay = "0s"\nauth_failure_delay_max = "0s"',
      odmr: 'auth_per_minute = 10000',
      toml: acmeAccount('acme.test'),
    });
    await c.add('c', WRONG);
    await c.converged();
    assert.equal((await c.node('a').cli(['home', 'acme.test', 'a'])).code, 0);
  });
  after(() => c?.stopAll());

  test('a client without the secret cannot pass for a node', async () => {
    const a = c.node('a');
    const bad = await cram(a.smtpPort, 'cluster:b', WRONG);
    assert.match(bad.reply, /^535 /);
    await bad.chat.ask('MAIL FROM:<x@outside.test>\r\n');
    const [rcpt = ''] = await bad.chat.ask('RCPT TO:<u@elsewhere.example>\r\n');
    assert.match(rcpt, /^5\d\d /, 'no relaying');
    bad.chat.close();
    // The same with the secret: a node, trusted to relay.
    const good = await cram(a.smtpPort, 'cluster:b', SECRET);
    assert.match(good.reply, /^235 /);
    good.chat.close();
  });

  test('a node with another secret keeps its mail held until the secret is fixed', async () => {
    const [a, cc] = [c.node('a'), c.node('c')];
    await sendMail(a.smtpPort, { from: 'x@outside.test', to: ['u@acme.test'], subject: 'at-home' });
    await sendMail(cc.smtpPort, { from: 'x@outside.test', to: ['u@acme.test'], subject: 'at-c' });
    await eventually(
      'held at a and at c',
      async () => (await a.held('acme.test')) === 1 && (await cc.held('acme.test')) === 1,
    );
    // c tries (every transfer_interval) and is refused: the mail stays, acknowledged, not bounced.
    await eventually('two refused transfer passes at c', async () => {
      const passes = (cc.daemon?.stdout() ?? '')
        .split('\n')
        .filter((l) => l.includes('cluster: transfer pass done') && l.includes('"left":1'));
      return passes.length >= 2;
    });
    assert.equal(await cc.held('acme.test'), 1);
    assert.equal((await cc.status()).messages, 1, 'no bounce');
    assert.equal(await a.held('acme.test'), 1, 'nothing arrived from c');
    // A customer at c gets what c holds; a's part cannot be asked for without the secret and
    // stays at a.
    // (Between two of c's refused transfer passes: a pass holds the lane, and the answer is then
    // 451 — nothing else can be served.)
    assert.deepEqual(await collectBetweenPasses(cc), ['at-c']);
    assert.equal(await a.held('acme.test'), 1);
    // Fixed: c's next session at a authenticates and the rest reaches the customer, once.
    await cc.stop();
    cc.secret = SECRET;
    await cc.start();
    await cc.op('status');
    assert.deepEqual(await collectSubjects(cc), ['at-home']);
    await eventually('nothing left anywhere', async () => {
      for (const n of c.nodes.values()) if ((await n.status()).messages !== 0) return false;
      return true;
    });
  });
});
