// A node SIGKILLed in the middle of a transfer of held mail to its home: first the sending node,
// then the home while it receives. Nothing acknowledged is lost; a message can arrive twice only
// if it was in flight at the kill (at most one per connection: two connections here), and the
// customer then collects everything from the home.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { collect } from '../../src/odmr/index.js';
import type { ReceivedMessage, ServerHooks } from '../../src/smtp/server/hooks.js';
import { chunksOf } from '../../src/smtp/server/message-data.js';
import { redisMissing } from '../support/redis.js';
import { TestCluster } from './kit.js';
import { sendMail } from '../support/inject.js';

const N = 80;
const BODY = `${'x'.repeat(998)}\r\n`.repeat(100);

async function eventually(
  what: string,
  cond: () => Promise<boolean>,
  ms = 60_000,
  every = 100,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

describe('cluster: a node killed during a transfer', { skip: redisMissing() }, () => {
  let c: TestCluster;

  before(async () => {
    c = await TestCluster.start(['a', 'b'], {
      toml: `
[delivery]
concurrency_per_destination = 2

[[odmr.account]]
user = "acme"
password = "acme-secret-123"
domains = ["acme.test"]
`,
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
    const got: ReceivedMessage[] = [];
    let n = 0;
    const hooks: ServerHooks = {
      newMessageId: () => `m${++n}`,
      async accept(m) {
        got.push(m);
        return { queueId: m.id };
      },
    };
    await collect({
      host: '127.0.0.1',
      port: a.odmrPort,
      user: 'acme',
      password: 'acme-secret-123',
      session: { hostname: 'customer.test' },
      hooks,
      timeoutMs: 30_000,
    });
    const subjects = got.map(
      (m) => /Subject: (\S+)/.exec(Buffer.concat(chunksOf(m.data)).toString())?.[1] ?? '?',
    );
    const distinct = new Set(subjects);
    for (let i = 0; i < N; i++) assert.ok(distinct.has(`m${i}`), `m${i} was not lost`);
    const dups = subjects.length - distinct.size;
    assert.ok(dups <= 4, `${dups} duplicates: at most one per connection in flight at each of the two kills`);
  });
});
