// [smtp]'s per-client rates (Postfix's anvil limits) in a cluster of three real `logmta serve`
// nodes sharing one real redis-server: one client spreading its connections, MAILs and RCPTs over
// the nodes is refused (421 4.7.0 at connect, 450 4.7.1 at MAIL and RCPT, the per-node replies)
// once the cluster-wide rate is used up, and the refusal is logged by one node only. With Redis
// killed, mail is still accepted: each node counts alone with the full rate (fail open), the
// outage is logged and the fallbacks are counted in the metrics; with Redis back the rates are
// shared again. The control: two nodes without [cluster] count alone, each allowing the rate.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { makeTempDir, runLogmta, SmtpChat, type SpawnedDaemon, spawnDaemon } from '../support/daemon.js';
import { redisMissing } from '../support/redis.js';
import { SmtpSink } from '../support/sink.js';
import { arrived, eventually, TestCluster } from './kit.js';

const RATES = `client_connection_rate = "4/1m"
client_message_rate = "3/1m"
client_recipient_rate = "5/1m"
# Only 127.0.0.1 (the nodes themselves) is spared; the clients come from other loopback addresses.
client_rate_exceptions = ["127.0.0.1"]
relay_domains = ["rated.test"]`;

const route = (sink: SmtpSink) => `
[[route]]
domain = "rated.test"
host = "127.0.0.1:${sink.port}"
`;

/** A session from `from` at `port`: the greeting's first line, and the chat after EHLO if it was 220. */
async function open(port: number, from: string): Promise<{ greeting: string; chat: SmtpChat }> {
  const chat = await SmtpChat.connect(port, '127.0.0.1', from);
  const greeting = ((await chat.read(1))[0] ?? '').trimEnd();
  if (greeting.startsWith('220')) await chat.ask('EHLO client.test\r\n');
  return { greeting, chat };
}

/** One whole message on an open session; the code of each reply (MAIL, RCPT..., DATA, end of data). */
async function message(chat: SmtpChat, subject: string, rcpts = 1): Promise<string[]> {
  const codes: string[] = [];
  const mail = (await chat.ask('MAIL FROM:<x@outside.test>\r\n'))[0] ?? '';
  codes.push(mail.slice(0, 9));
  if (!mail.startsWith('250')) return codes;
  for (let i = 0; i < rcpts; i++)
    codes.push(((await chat.ask(`RCPT TO:<u${i}@rated.test>\r\n`))[0] ?? '').slice(0, 9));
  if (!codes.slice(1).some((c) => c.startsWith('250'))) {
    await chat.ask('RSET\r\n');
    return codes;
  }
  codes.push(((await chat.ask('DATA\r\n'))[0] ?? '').slice(0, 3));
  codes.push(((await chat.ask(`Subject: ${subject}\r\n\r\nhello\r\n.\r\n`))[0] ?? '').slice(0, 3));
  return codes;
}

const ACCEPTED = ['250 2.1.0', '250 2.1.5', '354', '250'];
const TOO_MUCH_MAIL = ['450 4.7.1'];

describe('cluster: per-client rates counted over every node', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let sink: SmtpSink;
  const logged = (what: string, ip: string) =>
    ['a', 'b', 'c'].map(
      (n) =>
        (c.node(n).daemon?.stdout() ?? '')
          .split('\n')
          .filter((l) => l.includes(what) && l.includes(`"ip":"${ip}"`)).length,
    );

  before(async () => {
    sink = await SmtpSink.start();
    c = await TestCluster.start(['a', 'b', 'c'], { admin: true, smtp: RATES, toml: route(sink) });
    await c.converged();
  });
  after(async () => {
    await c?.stopAll();
    await sink?.close();
  });

  test('logmta check says the rates are counted over the cluster', async () => {
    const r = await runLogmta(['check', '--config', c.node('a').configFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /client rates +connections 4\/1m, messages 3\/1m, recipients 5\/1m; 1 exception block\(s\); counted over the cluster/,
    );
  });

  test('connections: the fifth in the cluster gets 421 4.7.0 at connect, though no node saw more than two', async () => {
    const greetings: string[] = [];
    for (const n of ['a', 'b', 'c', 'a', 'b']) {
      const { greeting, chat } = await open(c.node(n).smtpPort, '127.0.0.2');
      greetings.push(greeting);
      if (!greeting.startsWith('220')) await chat.waitClosed();
      chat.close();
    }
    assert.deepEqual(
      greetings.map((g) => g.slice(0, 3)),
      ['220', '220', '220', '220', '421'],
      c.logs(),
    );
    assert.match(
      greetings[4]!,
      /^421 4\.7\.0 b\.cluster\.test Error: too many connections from 127\.0\.0\.2$/,
    );
    // Another client is not concerned.
    const other = await open(c.node('b').smtpPort, '127.0.0.9');
    assert.match(other.greeting, /^220 /);
    other.chat.close();
    await eventually('the refusal logged', async () =>
      logged('client rate limit reached', '127.0.0.2').some((x) => x > 0),
    );
    assert.deepEqual(
      logged('client rate limit reached', '127.0.0.2'),
      [0, 1, 0],
      'logged once, by the node that refused',
    );
  });

  test('messages: the fourth MAIL in the cluster gets 450 4.7.1; the three before are delivered', async () => {
    const got: string[][] = [];
    const chats: SmtpChat[] = [];
    for (const n of ['a', 'b', 'c']) {
      const { chat } = await open(c.node(n).smtpPort, '127.0.0.3');
      chats.push(chat);
      got.push(await message(chat, `m-${n}`));
    }
    got.push(await message(chats[0]!, 'm-a2'));
    assert.deepEqual(got, [ACCEPTED, ACCEPTED, ACCEPTED, TOO_MUCH_MAIL], c.logs());
    const refused = (await chats[1]!.ask('MAIL FROM:<x@outside.test>\r\n'))[0] ?? '';
    assert.equal(refused, '450 4.7.1 Error: too much mail from 127.0.0.3', 'at b as well');
    for (const chat of chats) chat.close();
    await arrived(sink, 3);
  });

  test('recipients: the sixth RCPT in the cluster gets 450 4.7.1', async () => {
    const got: string[][] = [];
    for (const [n, k] of [
      ['a', 2],
      ['b', 2],
      ['c', 2],
    ] as const) {
      const { chat } = await open(c.node(n).smtpPort, '127.0.0.4');
      got.push(await message(chat, `r-${n}`, k));
      chat.close();
    }
    assert.deepEqual(got, [
      ['250 2.1.0', '250 2.1.5', '250 2.1.5', '354', '250'],
      ['250 2.1.0', '250 2.1.5', '250 2.1.5', '354', '250'],
      ['250 2.1.0', '250 2.1.5', '450 4.7.1', '354', '250'],
    ]);
  });

  test('Redis stopped: mail is still accepted, each node counting alone (logged, counted); shared again once Redis is back', async () => {
    const fallbacks = async (n: string) =>
      (await c.node(n).metric('logmta_cluster_local_fallbacks_total')) ?? 0;
    const before = { a: await fallbacks('a'), b: await fallbacks('b') };
    await c.redis.kill();
    for (const n of ['a', 'b', 'c']) {
      await eventually(
        `${n} to notice`,
        async () => (await c.node(n).metric('logmta_cluster_redis_up')) === 0,
      );
      await eventually(`${n} to log the outage`, async () =>
        /cluster: Redis unreachable; local limits/.test(c.node(n).daemon?.stdout() ?? ''),
      );
    }
    // Three messages at a and three at b: twice the cluster's rate, each node's own rate.
    const got: string[][] = [];
    for (const n of ['a', 'b']) {
      const { greeting, chat } = await open(c.node(n).smtpPort, '127.0.0.5');
      assert.match(greeting, /^220 /);
      for (let i = 0; i < 3; i++) got.push(await message(chat, `down-${n}${i}`));
      // The node's own count still holds.
      got.push(await message(chat, `down-${n}-over`));
      chat.close();
    }
    assert.deepEqual(got, [
      ...[ACCEPTED, ACCEPTED, ACCEPTED, TOO_MUCH_MAIL],
      ...[ACCEPTED, ACCEPTED, ACCEPTED, TOO_MUCH_MAIL],
    ]);
    await arrived(sink, 3 + 3 + 6);
    // Each decision taken locally is counted: a connection, four MAILs and three RCPTs per node.
    assert.ok(
      (await fallbacks('a')) >= before.a + 8,
      `fallbacks at a: ${await fallbacks('a')} (before ${before.a})`,
    );
    assert.ok(
      (await fallbacks('b')) >= before.b + 8,
      `fallbacks at b: ${await fallbacks('b')} (before ${before.b})`,
    );

    await c.redis.start();
    for (const n of ['a', 'b', 'c'])
      await eventually(
        `${n} shared again`,
        async () => (await c.node(n).metric('logmta_cluster_redis_up')) === 1,
      );
    const again: string[][] = [];
    for (const n of ['a', 'b', 'c', 'a']) {
      const { chat } = await open(c.node(n).smtpPort, '127.0.0.6');
      again.push(await message(chat, `up-${n}`));
      chat.close();
    }
    assert.deepEqual(again, [ACCEPTED, ACCEPTED, ACCEPTED, TOO_MUCH_MAIL]);
  });
});

describe('without [cluster]: each node counts a client alone', () => {
  let sink: SmtpSink;
  const nodes: SpawnedDaemon[] = [];

  before(async () => {
    sink = await SmtpSink.start();
    for (let i = 0; i < 2; i++) {
      const dir = makeTempDir('logmta-rates-alone-');
      nodes.push(await spawnDaemon({ dir, toml: `[smtp]\n${RATES}\n${route(sink)}` }));
    }
  });
  after(async () => {
    for (const d of nodes) {
      await d.stop(10_000).catch(() => {});
      rmSync(d.dir, { recursive: true, force: true });
    }
    await sink?.close();
  });

  test('the same client gets the whole rate at each node', async () => {
    const got: string[][] = [];
    for (const d of nodes) {
      const { chat } = await open(d.port, '127.0.0.3');
      for (let i = 0; i < 4; i++) got.push(await message(chat, `alone-${i}`));
      chat.close();
    }
    assert.deepEqual(got, [
      ...[ACCEPTED, ACCEPTED, ACCEPTED, TOO_MUCH_MAIL],
      ...[ACCEPTED, ACCEPTED, ACCEPTED, TOO_MUCH_MAIL],
    ]);
    const greetings: string[] = [];
    for (const d of nodes)
      for (let i = 0; i < 4; i++) {
        const { greeting, chat } = await open(d.port, '127.0.0.2');
        greetings.push(greeting.slice(0, 3));
        chat.close();
      }
    assert.deepEqual(greetings, Array(8).fill('220'), 'four connections at each node');
    const { greeting, chat } = await open(nodes[0]!.port, '127.0.0.2');
    assert.match(greeting, /^421 4\.7\.0 .* Error: too many connections from 127\.0\.0\.2$/);
    chat.close();
    await arrived(sink, 6);
  });
});
