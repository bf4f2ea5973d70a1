// The ODMR provider (RFC 2645) end to end against a logmta daemon: the initial state (EHLO, AUTH,
// QUIT only; 502 otherwise; 530 for ATRN before AUTH), the AUTH rules (CRAM-MD5 always, PLAIN
// only under TLS), ATRN's refusals (450 another account's domain, 453 no mail), a new session of
// the account taking over from one that vanished,
// and the turnaround itself driven by logmta's own customer code with an in-memory mail store.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { collect } from '../../src/odmr/index.js';
import { cramMd5Response } from '../../src/smtp/client/auth.js';
import type { ReceivedMessage, ServerHooks } from '../../src/smtp/server/hooks.js';
import { SmtpChat, startTestDaemon, type TestDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { chunksOf } from '../../src/smtp/server/message-data.js';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';

const TOML = `
[[odmr.account]]
user = "acme"
password = "acme-secret"
domains = ["acme.example", "acme-corp.example"]

[[odmr.account]]
user = "beta"
password = "beta-secret"
domains = ["beta.example"]
`;

/** A customer's mail store in memory: the hooks collect() runs its server role with. */
function memoryStore(): { hooks: ServerHooks; got: ReceivedMessage[] } {
  const got: ReceivedMessage[] = [];
  let n = 0;
  return {
    got,
    hooks: {
      newMessageId: () => `m${++n}`,
      async accept(m) {
        got.push(m);
        return { queueId: m.id };
      },
    },
  };
}

describe('ODMR provider', () => {
  let d: TestDaemon;
  let odmrPort: number;

  before(async () => {
    d = await startTestDaemon({ toml: TOML });
    const a = d.daemon.addresses.odmr[0] ?? '';
    odmrPort = Number(a.slice(a.lastIndexOf(':') + 1));
  });
  after(() => d.stop());

  async function open(): Promise<SmtpChat> {
    const c = await SmtpChat.connect(odmrPort);
    const [g] = await c.read(1);
    assert.match(g ?? '', /^220 /);
    return c;
  }

  async function login(c: SmtpChat, user: string, pass: string): Promise<string> {
    await c.ask('EHLO customer.test\r\n');
    const [challenge] = await c.ask('AUTH CRAM-MD5\r\n');
    const b64 = (challenge ?? '').slice(4);
    return (await c.ask(`${cramMd5Response(user, pass, b64)}\r\n`))[0] ?? '';
  }

  test('the initial state allows EHLO, AUTH and QUIT; EHLO lists AUTH CRAM-MD5 and ATRN', async () => {
    const c = await open();
    c.send('EHLO customer.test\r\n');
    const [ehlo = ''] = await c.read(1);
    assert.match(ehlo, /^250-AUTH CRAM-MD5\r\n/m);
    assert.match(ehlo, /^250 ATRN\r\n/m);
    assert.doesNotMatch(ehlo, /PLAIN|LOGIN|STARTTLS/);
    const r = await c.ask(
      'MAIL FROM:<a@b.test>\r\nRCPT TO:<x@acme.example>\r\nDATA\r\nHELO x\r\nETRN acme.example\r\nATRN\r\n',
      6,
    );
    assert.deepEqual(
      r.slice(0, 5).map((l) => l.slice(0, 3)),
      ['502', '502', '502', '502', '502'],
    );
    assert.equal(r[5], '530 5.7.0 Authentication required');
    // PLAIN would send the password in the clear: refused without TLS, even from loopback.
    assert.match((await c.ask('AUTH PLAIN AGFjbWUAYWNtZS1zZWNyZXQ=\r\n'))[0] ?? '', /^538 /);
    assert.match((await c.ask('QUIT\r\n'))[0] ?? '', /^221 /);
    c.close();
  });

  test('a wrong password gets 535 and ATRN stays refused', async () => {
    const c = await open();
    assert.match(await login(c, 'acme', 'wrong'), /^535 /);
    assert.equal((await c.ask('ATRN acme.example\r\n'))[0], '530 5.7.0 Authentication required');
    c.close();
  });

  test('ATRN for a domain of another account is refused for the whole request (450)', async () => {
    await sendMail(d.port, { from: 'a@sender.test', to: ['x@beta.example'] });
    await waitFor(() => d.daemon.queues.heldCount('beta.example') === 1, 'held for beta');
    const c = await open();
    assert.match(await login(c, 'acme', 'acme-secret'), /^235 /);
    assert.equal((await c.ask('ATRN beta.example\r\n'))[0], '450 4.7.1 ATRN request refused');
    assert.equal((await c.ask('ATRN acme.example,beta.example\r\n'))[0], '450 4.7.1 ATRN request refused');
    assert.equal((await c.ask('ATRN acme.example\r\n'))[0], '453 4.2.0 You have no mail');
    assert.match((await c.ask('ATRN acme example\r\n'))[0] ?? '', /^501 /);
    c.close();
    assert.equal(d.daemon.queues.heldCount('beta.example'), 1);
  });

  test('a new session of the same account takes over a lane its vanished session holds; nothing is lost', async () => {
    await sendMail(d.port, { from: 'a@sender.test', to: ['y@acme-corp.example'] });
    await waitFor(() => d.daemon.queues.heldCount('acme-corp.example') === 1, 'held for acme-corp');
    const first = await open();
    assert.match(await login(first, 'acme', 'acme-secret'), /^235 /);
    assert.equal(
      (await first.ask('ATRN acme-corp.example\r\n'))[0],
      '250 2.0.0 OK now reversing the connection',
    );
    // The first customer never greets (its line died). The customer dials in again: rather than
    // 451 until the provider's reply timeout, the earlier session is cut and the new one served.
    const store = memoryStore();
    const r = await collect({
      host: '127.0.0.1',
      port: odmrPort,
      user: 'acme',
      password: 'acme-secret',
      session: { hostname: 'customer.test' },
      hooks: store.hooks,
    });
    assert.deepEqual(r, { status: 'received', messages: 1, complete: true });
    assert.deepEqual(
      store.got[0]?.recipients.map((x) => x.address),
      ['y@acme-corp.example'],
    );
    await first.waitClosed();
    await waitFor(() => d.daemon.queues.heldCount('acme-corp.example') === 0, 'lane emptied');
  });

  test('ATRN delivers every held message of the requested domains, a split message once with all its recipients', async () => {
    await sendMail(d.port, { from: 'a@sender.test', to: ['one@acme.example'], subject: 'first' });
    await sendMail(d.port, {
      from: 'a@sender.test',
      to: ['two@acme.example', 'three@acme-corp.example', 'b@beta.example'],
      subject: 'split',
    });
    await waitFor(
      () =>
        d.daemon.queues.heldCount('acme.example') === 2 &&
        d.daemon.queues.heldCount('acme-corp.example') === 1,
      'held pieces',
    );
    const store = memoryStore();
    const r = await collect({
      host: '127.0.0.1',
      port: odmrPort,
      user: 'acme',
      password: 'acme-secret',
      domains: ['acme.example', 'acme-corp.example'],
      session: { hostname: 'customer.test' },
      hooks: store.hooks,
    });
    assert.deepEqual(r, { status: 'received', messages: 2, complete: true });
    const rcpts = store.got.map((m) => m.recipients.map((x) => x.address).sort());
    assert.deepEqual(rcpts, [['one@acme.example'], ['three@acme-corp.example', 'two@acme.example']]);
    assert.match(Buffer.concat(chunksOf(store.got[1]!.data)).toString(), /Subject: split/);
    assert.equal(d.daemon.queues.heldCount('acme.example'), 0);
    assert.equal(d.daemon.queues.heldCount('acme-corp.example'), 0);
    // The other account's piece of the split message is untouched.
    assert.equal(d.daemon.queues.heldCount('beta.example'), 2);
    // Nothing left: 453 on the next poll.
    const again = await collect({
      host: '127.0.0.1',
      port: odmrPort,
      user: 'acme',
      password: 'acme-secret',
      session: { hostname: 'customer.test' },
      hooks: memoryStore().hooks,
    });
    assert.deepEqual(again, { status: 'no-mail', messages: 0 });
  });
});

describe('ODMR reports', () => {
  test('a bounce for a recipient the customer refused names the customer host from its greeting as Remote-MTA', async () => {
    const sink = await SmtpSink.start({});
    const d = await startTestDaemon({
      toml: `${TOML}\n[[route]]\ndomain = "*"\nhost = "127.0.0.1:${sink.port}"\n`,
    });
    try {
      const a = d.daemon.addresses.odmr[0] ?? '';
      await sendMail(d.port, { from: 'a@sender.test', to: ['gone@acme.example', 'one@acme.example'] });
      await waitFor(() => d.daemon.queues.heldCount('acme.example') === 1, 'the held piece');
      const store = memoryStore();
      const r = await collect({
        host: '127.0.0.1',
        port: Number(a.slice(a.lastIndexOf(':') + 1)),
        user: 'acme',
        password: 'acme-secret',
        session: { hostname: 'customer.test' },
        hooks: {
          ...store.hooks,
          checkRecipient: (addr) =>
            addr === 'gone@acme.example' ? { code: 550, enhanced: '5.1.1', text: 'no such user' } : null,
        },
      });
      assert.deepEqual(r, { status: 'received', messages: 1, complete: true });
      await waitFor(() => sink.transactions.some((t) => t.sender === ''), 'the bounce');
      const dsn = parseDsn(sink.transactions.find((t) => t.sender === '')!.data);
      assert.equal(dsn.recipients.length, 1);
      assert.equal(dsn.recipients[0]?.['final-recipient'], 'rfc822; gone@acme.example');
      assert.equal(dsn.recipients[0]?.['remote-mta'], 'dns; customer.test');
      assert.match(dsn.text, /\(host customer\.test\)/);
    } finally {
      await d.stop();
      await sink.close();
    }
  });
});
