// A reload (SIGHUP) of a cluster node, as a postmaster does it after an edit: the node restarts in
// place and rejoins; the domain homes stay where they were, held mail sent by another node meanwhile
// still reaches its home, exactly once, and both nodes are alive again in `cluster status`.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { redisMissing } from '../support/redis.js';
import { waitFor } from '../support/wait.js';
import { acmeAccount, TestCluster } from './kit.js';

describe('cluster: a node reloaded with SIGHUP', { skip: redisMissing() }, () => {
  let c: TestCluster;
  before(async () => {
    c = await TestCluster.start([], { toml: acmeAccount('acme.test') });
    await c.add('a');
    await c.add('b');
    await c.converged();
  });
  after(async () => {
    await c?.stopAll();
  });

  test('the home stays, mail sent meanwhile arrives once, both nodes alive after', async () => {
    const [a, b] = [c.node('a'), c.node('b')];
    assert.equal((await b.cli(['home', 'acme.test', 'a'])).code, 0);
    await sendMail(b.smtpPort, { from: 'x@o.test', to: ['u@acme.test'], subject: 'before' });
    await waitFor(async () => (await a.held('acme.test')) === 1, 'the first mail at its home', 20_000);

    const reloads = () => (a.daemon!.stdout().match(/"msg":"reloaded"/g) ?? []).length;
    a.daemon!.kill('SIGHUP');
    await sendMail(b.smtpPort, { from: 'x@o.test', to: ['u@acme.test'], subject: 'during' });
    await waitFor(() => reloads() === 1, 'the reload done', 30_000);
    assert.ok(a.running, 'the node runs on after the reload');
    await sendMail(b.smtpPort, { from: 'x@o.test', to: ['u@acme.test'], subject: 'after' });
    await waitFor(async () => (await a.held('acme.test')) === 3, 'all three at the home', 30_000);
    await c.converged(20_000);
    const home = await a.cli(['home', 'acme.test']);
    assert.match(home.stdout, /\ba\b/, home.stdout + home.stderr);
    await new Promise((r) => setTimeout(r, 1_000));
    assert.equal(await a.held('acme.test'), 3, 'none twice');
    assert.equal(await b.held('acme.test'), 0);
  });
});
