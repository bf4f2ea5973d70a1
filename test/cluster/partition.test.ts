// A network partition between nodes that both still reach Redis: two real nodes; the home's SMTP
// and ODMR are advertised through a link the test can cut. While cut, mail taken at the other
// node is held there, acknowledged; a customer at that node gets what it holds and the home's
// part stays at the home. Once healed, the held mail moves home (the home's heartbeat never
// stopped) and the customer gets the rest — every message once.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { LinkProxy } from '../support/link-proxy.js';
import { redisMissing } from '../support/redis.js';
import {
  acmeAccount,
  collectBetweenPasses,
  collectSubjects,
  eventually,
  SECRET,
  TestCluster,
  type TestNode,
} from './kit.js';

describe('cluster: a network partition between nodes', { skip: redisMissing() }, () => {
  let c: TestCluster;
  let smtpLink: LinkProxy;
  let odmrLink: LinkProxy;
  let a: TestNode;
  let b: TestNode;

  before(async () => {
    smtpLink = await LinkProxy.start();
    odmrLink = await LinkProxy.start();
    c = await TestCluster.start(['b'], {
      toml: acmeAccount('acme.test'),
    });
    a = await c.add(
      'a',
      SECRET,
      `advertise = "127.0.0.1:${smtpLink.port}"\nodmr_advertise = "127.0.0.1:${odmrLink.port}"`,
    );
    smtpLink.target = a.smtpPort;
    odmrLink.target = a.odmrPort;
    b = c.node('b');
    await c.converged();
    assert.equal((await b.cli(['home', 'acme.test', 'a'])).code, 0);
  });
  after(async () => {
    await c?.stopAll();
    await smtpLink?.close();
    await odmrLink?.close();
  });

  test('mail waits on its side of the partition and moves home once it heals, each message once', async () => {
    await sendMail(b.smtpPort, { from: 'x@outside.test', to: ['u@acme.test'], subject: 'before' });
    // Held at the home and its relay recorded at b: cut before b has read the home's 250 and
    // the message stays at b too (in flight at the partition) — a race of the test, not the case.
    await eventually(
      'held at the home, gone from b',
      async () => (await a.held('acme.test')) === 1 && (await b.status()).messages === 0,
    );
    smtpLink.cut();
    odmrLink.cut();
    for (const s of ['cut1', 'cut2'])
      await sendMail(b.smtpPort, { from: 'x@outside.test', to: ['u@acme.test'], subject: s });
    await eventually('held at b', async () => (await b.held('acme.test')) === 2);
    // Both alive for each other all along: only the link is gone.
    assert.match((await b.cli(['status'])).stdout, /^a\s+alive/m);
    // The customer at b: what b holds; the home cannot be reached, its part stays there.
    assert.deepEqual(await collectBetweenPasses(b), ['cut1', 'cut2']);
    assert.equal(await a.held('acme.test'), 1);
    await sendMail(b.smtpPort, { from: 'x@outside.test', to: ['u@acme.test'], subject: 'cut3' });
    await eventually('cut3 held at b', async () => (await b.held('acme.test')) === 1);
    smtpLink.heal();
    odmrLink.heal();
    await eventually(
      'moved home after the heal',
      async () => (await a.held('acme.test')) === 2 && (await b.status()).messages === 0,
    );
    assert.deepEqual(await collectSubjects(b), ['before', 'cut3']);
    assert.equal(await a.held('acme.test'), 0);
  });
});
