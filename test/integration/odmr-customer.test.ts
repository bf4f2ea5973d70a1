// logmta customer ↔ logmta provider: two daemons exchange mail by ODMR. The customer daemon polls
// its [[odmr.provider]] at start and receives the held mail into its own queue (then its Maildirs);
// a message split across two domains of the account crosses once with both recipients; a customer
// that drops the connection mid-transfer loses nothing, and the next ATRN delivers the rest.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MtaEvent } from '../../src/admin/events.js';
import { Router } from '../../src/delivery/router.js';
import { collect } from '../../src/odmr/index.js';
import { makeServerHooks } from '../../src/policy/hooks.js';
import { IdSource } from '../../src/queue/ids.js';
import {
  maildirMessages,
  startTestDaemon,
  type TestDaemon,
  waitFor,
  waitForMaildir,
} from '../support/daemon.js';
import { cuttingProxy } from '../support/cutting-proxy.js';
import { sendMail } from '../support/inject.js';

const PROVIDER = `
[[odmr.account]]
user = "acme"
password = "acme-secret"
domains = ["acme.example", "acme-corp.example"]

[[odmr.account]]
user = "beta"
password = "beta-secret"
domains = ["beta.example"]
`;

function customerToml(providerPort: number | undefined): string {
  return `
[[local]]
domain = "acme.example"
maildir = "mail/{domain}/{user}"

[[local]]
domain = "acme-corp.example"
maildir = "mail/{domain}/{user}"
${
  providerPort === undefined
    ? ''
    : `
[[odmr.provider]]
host = "127.0.0.1:${providerPort}"
user = "acme"
password = "acme-secret"
interval = "1h"
`
}`;
}

const portOf = (hp: string | undefined): number => Number((hp ?? '').slice((hp ?? '').lastIndexOf(':') + 1));

describe('logmta customer and logmta provider', () => {
  let p: TestDaemon;
  let odmrPort: number;
  const atrn: MtaEvent[] = [];

  before(async () => {
    p = await startTestDaemon({ toml: PROVIDER });
    odmrPort = portOf(p.daemon.addresses.odmr[0]);
    p.daemon.events.on((ev) => {
      if (ev.type === 'atrn') atrn.push(ev);
    });
  });
  after(() => p.stop());

  test('serve polls its provider at start; a split message crosses once with both recipients', async () => {
    await sendMail(p.port, { from: 'a@sender.test', to: ['one@acme.example'], subject: 'first' });
    await sendMail(p.port, {
      from: 'a@sender.test',
      to: ['two@acme.example', 'three@acme-corp.example', 'b@beta.example'],
      subject: 'split',
    });
    await waitFor(
      () =>
        p.daemon.queues.heldCount('acme.example') === 2 &&
        p.daemon.queues.heldCount('acme-corp.example') === 1,
      'held pieces',
    );
    const c = await startTestDaemon({ toml: customerToml(odmrPort) });
    try {
      const mail = (dom: string, user: string) => join(c.dataDir, 'mail', dom, user);
      const [one] = await waitForMaildir(mail('acme.example', 'one'));
      const [two] = await waitForMaildir(mail('acme.example', 'two'));
      const [three] = await waitForMaildir(mail('acme-corp.example', 'three'));
      assert.match(one ?? '', /Subject: first/);
      assert.match(two ?? '', /Subject: split/);
      // One transaction for the split message: both copies carry the same queue id of the customer.
      const idOf = (m: string | undefined) => /Received: from [\s\S]*?id (\S+)/.exec(m ?? '')?.[1];
      assert.ok(idOf(two));
      assert.equal(idOf(two), idOf(three));
      await waitFor(
        () =>
          p.daemon.queues.heldCount('acme.example') === 0 &&
          p.daemon.queues.heldCount('acme-corp.example') === 0,
        'provider lanes empty',
      );
      assert.equal(p.daemon.queues.heldCount('beta.example'), 1, "the other account's piece stays");
      await waitFor(
        () => atrn.some((e) => e.type === 'atrn' && e.phase === 'end'),
        'the end of the turnaround',
      );
      const end = atrn.find((e) => e.type === 'atrn' && e.phase === 'end');
      assert.equal(end?.type === 'atrn' ? end.delivered : undefined, 2);
    } finally {
      await c.stop();
    }
  });

  test('a customer that drops mid-transfer loses nothing; the next ATRN delivers the rest', async () => {
    for (const s of ['m1', 'm2', 'm3'])
      await sendMail(p.port, { from: 'a@sender.test', to: [`${s}@acme.example`], subject: s });
    await waitFor(() => p.daemon.queues.heldCount('acme.example') === 3, 'three held');
    const c = await startTestDaemon({ toml: customerToml(undefined) });
    const proxy = await cuttingProxy(odmrPort, 2);
    try {
      const cfg = c.config;
      const hooks = makeServerHooks(cfg, new Router(cfg, c.daemon.resolver), c.daemon.queues, new IdSource());
      const opts = {
        host: '127.0.0.1',
        user: 'acme',
        password: 'acme-secret',
        domains: ['acme.example'],
        session: { hostname: 'customer.test' },
        hooks,
      };
      const first = await collect({ ...opts, port: proxy.port });
      assert.deepEqual(first, { status: 'received', messages: 1, complete: false });
      // The provider commits what was delivered and keeps the rest held (451 while it notices).
      await waitFor(() => p.daemon.queues.heldCount('acme.example') === 2, 'two still held');
      let second: Awaited<ReturnType<typeof collect>> | undefined;
      for (let i = 0; i < 100 && second === undefined; i++) {
        second = await collect({ ...opts, port: odmrPort }).catch(async (e: { smtp?: { code: number } }) => {
          if (e.smtp?.code !== 451) throw e;
          await new Promise((r) => setTimeout(r, 20));
          return undefined;
        });
      }
      assert.deepEqual(second, { status: 'received', messages: 2, complete: true });
      assert.equal(p.daemon.queues.heldCount('acme.example'), 0);
      const got = ['m1', 'm2', 'm3'].map(
        (u) => maildirMessages(join(c.dataDir, 'mail', 'acme.example', u)).length,
      );
      await waitFor(
        () =>
          ['m1', 'm2', 'm3'].every(
            (u) => maildirMessages(join(c.dataDir, 'mail', 'acme.example', u)).length === 1,
          ),
        `each message exactly once (had ${got.join(',')})`,
      );
    } finally {
      await proxy.close();
      await c.stop();
    }
  });
});
