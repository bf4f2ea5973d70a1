// ETRN (RFC 1985) end to end on the main SMTP listener: mail for an ETRN domain whose host defers
// waits in the domain's held lane; ETRN answers at once with the exact count and the lane is then
// delivered over new outbound connections; the reply codes for every kind of request; ETRN's
// place in the session (after EHLO, outside a transaction).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SmtpChat, startTestDaemon, type TestDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { sendMail } from '../support/inject.js';

describe('ETRN on the SMTP listener', () => {
  let sink: SmtpSink;
  let d: TestDaemon;
  let down = true;

  before(async () => {
    sink = await SmtpSink.start({
      rcptReply: () => (down ? '451 4.3.0 customer offline' : undefined),
    });
    d = await startTestDaemon({
      toml: `
[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${sink.port}"
probe_interval = "1h"

[[etrn]]
domain = "shop.example"
host = "127.0.0.1:${sink.port}"
probe_interval = "1h"
subdomains = true
`,
      deps: { deadHostMs: 1 },
    });
  });
  after(async () => {
    await d.stop();
    await sink.close();
  });

  async function chat(): Promise<SmtpChat> {
    const c = await SmtpChat.connect(d.port);
    await c.read(1);
    return c;
  }

  test('EHLO advertises ETRN', async () => {
    const c = await chat();
    c.send('EHLO client.test\r\n');
    const [ehlo] = await c.read(1);
    assert.match(ehlo ?? '', /250[- ]ETRN\r\n/);
    c.close();
  });

  test('deferred mail for an ETRN domain is held; ETRN answers 253 with the exact count and delivers it', async () => {
    down = true;
    for (let i = 0; i < 3; i++)
      await sendMail(d.port, { from: 'a@sender.test', to: [`u${i}@branch.example`] });
    await sendMail(d.port, { from: 'a@sender.test', to: ['x@deep.shop.example'] });
    await waitFor(() => d.daemon.queues.heldCount('branch.example') === 3, 'three held pieces');
    await waitFor(() => d.daemon.queues.heldCount('shop.example') === 1, 'one held piece for shop.example');
    const before = sink.transactions.length;
    down = false;
    const c = await chat();
    const replies = await c.ask('EHLO client.test\r\nETRN branch.example\r\n', 2);
    assert.equal(replies[1], '253 2.0.0 OK, 3 pending messages for node branch.example started');
    await waitFor(() => sink.transactions.length >= before + 3, 'three deliveries');
    await waitFor(() => d.daemon.queues.heldCount('branch.example') === 0, 'an empty lane');
    assert.deepEqual(
      sink.transactions
        .slice(before)
        .map((t) => t.recipients[0])
        .sort(),
      ['u0@branch.example', 'u1@branch.example', 'u2@branch.example'],
    );
    // Nothing left: 251, never 250/253 for an empty lane.
    assert.deepEqual(await c.ask('ETRN branch.example\r\n'), [
      '251 2.0.0 OK, no messages waiting for node branch.example',
    ]);
    // A subdomain of a domain held with subdomains = true, by its own name and by @parent.
    assert.deepEqual(await c.ask('ETRN @shop.example\r\n'), [
      '253 2.0.0 OK, 1 pending messages for node @shop.example started',
    ]);
    await waitFor(() => d.daemon.queues.heldCount('shop.example') === 0, 'shop.example delivered');
    assert.equal(sink.transactions.at(-1)?.recipients[0], 'x@deep.shop.example');
    assert.deepEqual(await c.ask('ETRN deep.shop.example\r\n'), [
      '251 2.0.0 OK, no messages waiting for node deep.shop.example',
    ]);
    assert.deepEqual(await c.ask('ETRN #branch.example\r\n'), [
      '251 2.0.0 OK, no messages waiting for node #branch.example',
    ]);
    c.close();
  });

  test('ETRN for a domain that is not an ETRN domain gets 459 and connects nowhere', async () => {
    const c = await chat();
    const conns = sink.connections;
    const r = await c.ask(
      'EHLO client.test\r\nETRN elsewhere.example\r\nETRN @example.org\r\nETRN #nosuchqueue\r\nETRN sub.branch.example\r\n',
      5,
    );
    assert.equal(r[1], '459 4.7.1 Node elsewhere.example not allowed: not an ETRN domain here');
    // "@example.org" covers no configured domain.
    assert.match(r[2] ?? '', /^459 /);
    assert.equal(r[3], '459 4.7.1 Node #nosuchqueue not allowed: no such queue');
    // branch.example is held without subdomains: its subdomains are not its lane.
    assert.match(r[4] ?? '', /^459 /);
    assert.equal(sink.connections, conns);
    c.close();
  });

  test('ETRN is refused before EHLO and inside a mail transaction, and checks its syntax', async () => {
    const c = await chat();
    assert.match((await c.ask('ETRN branch.example\r\n'))[0] ?? '', /^503 /);
    const r = await c.ask(
      'EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\nETRN branch.example\r\nRSET\r\nETRN\r\nETRN a b\r\nETRN bad..name\r\n',
      7,
    );
    assert.match(r[2] ?? '', /^503 /);
    assert.match(r[4] ?? '', /^501 /);
    assert.match(r[5] ?? '', /^501 /);
    assert.match(r[6] ?? '', /^501 /);
    c.close();
  });
});
