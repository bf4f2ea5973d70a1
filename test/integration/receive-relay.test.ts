// Relay control and local users over a socket against a whole in-process daemon: what a client
// may send where, decided at RCPT. Loopback is NOT trusted by itself (only relay_networks and
// AUTH are); a [[route]] — catch-all or for one domain — never opens the relay; a domain in
// smtp.relay_domains is accepted from anyone (we are its relay/backup MX). Also: DSN parameters
// given at MAIL/RCPT travel with each recipient to the next hop. ETRN subdomains of a customer
// under a public suffix open nothing else of the suffix (a suffix itself is refused: check-cli).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  codeOf,
  maildirMessages,
  SmtpChat,
  startTestDaemon,
  type TestDaemon,
  waitForMaildir,
} from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const codes = (rs: string[]) => rs.map(codeOf);

async function ehlo(port: number, from?: string): Promise<SmtpChat> {
  const c = await SmtpChat.connect(port, '127.0.0.1', from);
  await c.read(1);
  assert.equal(codeOf((await c.ask('EHLO relay.test\r\n'))[0] ?? ''), '250');
  return c;
}

describe('relay control without relay_networks', () => {
  let d: TestDaemon;
  let sink: SmtpSink;
  const chats: SmtpChat[] = [];
  before(async () => {
    sink = await SmtpSink.start();
    d = await startTestDaemon({
      toml: `
[smtp]
submission = ["127.0.0.1:0"]
relay_networks = []
relay_domains = ["backup.example"]
[[user]]
name = "alice"
password = "secret"
[[local]]
domain = "localhost"
users = ["alice", "Bob"]
[[route]]
domain = "routed.example"
host = "127.0.0.1:${sink.port}"
[[route]]
domain = "backup.example"
host = "127.0.0.1:${sink.port}"
[[route]]
domain = "*"
host = "127.0.0.1:${sink.port}"
[[etrn]]
domain = "customer.co.uk"
subdomains = true
`,
    });
  });
  after(async () => {
    for (const c of chats) c.close();
    await d?.stop();
    await sink?.close();
  });
  const session = async (port = d.port) => {
    const c = await ehlo(port);
    chats.push(c);
    return c;
  };

  test('a remote domain from a loopback client that is not in relay_networks: 554 5.7.1', async () => {
    const c = await session();
    await c.ask('MAIL FROM:<x@example.org>\r\n');
    const r = await c.ask('RCPT TO:<someone@remote.example>\r\n');
    assert.deepEqual(codes(r), ['554 5.7.1']);
    assert.match(r[0] ?? '', /relay access denied/);
    // The catch-all route does not make remote.example a relay domain; neither do tricks.
    const tricks = await c.ask(
      'RCPT TO:<someone%remote.example@backup.example>\r\nRCPT TO:<a@REMOTE.example>\r\n',
      2,
    );
    assert.deepEqual(codes(tricks), ['554 5.7.1', '554 5.7.1']);
  });

  test('a [[route]] alone grants no relay: its domain gets 554 5.7.1 from strangers', async () => {
    const c = await session();
    await c.ask('MAIL FROM:<x@example.org>\r\n');
    const r = await c.ask('RCPT TO:<pat@routed.example>\r\nRCPT TO:<pat@ROUTED.example>\r\n', 2);
    assert.deepEqual(codes(r), ['554 5.7.1', '554 5.7.1']);
  });

  test('ETRN subdomains of a customer under a public suffix: its names are taken, the rest of the suffix is not', async () => {
    const c = await session();
    await c.ask('MAIL FROM:<x@example.org>\r\n');
    const r = await c.ask(
      'RCPT TO:<a@another.co.uk>\r\nRCPT TO:<a@co.uk>\r\nRCPT TO:<a@xcustomer.co.uk>\r\nRCPT TO:<a@mail.customer.co.uk>\r\n',
      4,
    );
    assert.deepEqual(codes(r), ['554 5.7.1', '554 5.7.1', '554 5.7.1', '250 2.1.5']);
  });

  test('a domain in relay_domains is accepted from anyone and relayed by its route', async () => {
    const before = sink.transactions.length;
    const c = await session();
    const r = await c.ask('MAIL FROM:<x@example.org>\r\nRCPT TO:<pat@backup.example>\r\nDATA\r\n', 3);
    assert.deepEqual(codes(r), ['250 2.1.0', '250 2.1.5', '354']);
    assert.deepEqual(codes(await c.ask('Subject: routed\r\n\r\nhi\r\n.\r\n')), ['250 2.0.0']);
    await sink.waitForTransactions(before + 1);
    assert.deepEqual(sink.transactions[before]?.recipients, ['pat@backup.example']);
  });

  test('local users: a listed user is accepted (any case), an unknown one gets 550 5.1.1 at RCPT', async () => {
    const c = await session();
    await c.ask('MAIL FROM:<x@example.org>\r\n');
    const r = await c.ask(
      'RCPT TO:<bob@localhost>\r\nRCPT TO:<ALICE@LocalHost>\r\nRCPT TO:<mallory@localhost>\r\n',
      3,
    );
    assert.deepEqual(codes(r), ['250 2.1.5', '250 2.1.5', '550 5.1.1']);
    assert.match(r[2] ?? '', /<mallory@localhost>: user unknown/);
    // Local parts that are not plain mailbox names are refused outright.
    const odd = await c.ask(
      'RCPT TO:<alice%remote.example@localhost>\r\nRCPT TO:<"a b"@localhost>\r\nRCPT TO:<.alice@localhost>\r\n',
      3,
    );
    // (The last is not even a valid address: 501.)
    assert.deepEqual(codes(odd), ['550 5.1.3', '550 5.1.3', '501 5.1.3']);
  });

  test('after AUTH the same client may relay on the MTA port', async () => {
    const before = sink.transactions.length;
    const c = await session();
    assert.deepEqual(codes(await c.ask(`AUTH PLAIN ${b64('\0alice\0secret')}\r\n`)), ['235 2.7.0']);
    const r = await c.ask('MAIL FROM:<alice@localhost>\r\nRCPT TO:<someone@remote.example>\r\nDATA\r\n', 3);
    assert.deepEqual(codes(r), ['250 2.1.0', '250 2.1.5', '354']);
    assert.deepEqual(codes(await c.ask('Subject: relayed after auth\r\n\r\nhi\r\n.\r\n')), ['250 2.0.0']);
    await sink.waitForTransactions(before + 1);
    assert.deepEqual(sink.transactions[before]?.recipients, ['someone@remote.example']);
  });

  test('the submission port requires AUTH before MAIL (530 5.7.0), then relays', async () => {
    const c = await session(d.submissionPort);
    assert.deepEqual(codes(await c.ask('MAIL FROM:<alice@localhost>\r\n')), ['530 5.7.0']);
    assert.deepEqual(codes(await c.ask(`AUTH PLAIN ${b64('\0alice\0secret')}\r\n`)), ['235 2.7.0']);
    const r = await c.ask(
      'MAIL FROM:<alice@localhost>\r\nRCPT TO:<x@remote.example>\r\nRCPT TO:<alice@localhost>\r\n',
      3,
    );
    assert.deepEqual(codes(r), ['250 2.1.0', '250 2.1.5', '250 2.1.5']);
    assert.deepEqual(codes(await c.ask('RSET\r\nQUIT\r\n', 2)), ['250 2.0.0', '221 2.0.0']);
  });

  test('a message to a local user lands in its Maildir, named in lower case', async () => {
    const c = await session();
    const r = await c.ask('MAIL FROM:<>\r\nRCPT TO:<Bob@localhost>\r\nDATA\r\n', 3);
    assert.deepEqual(codes(r), ['250 2.1.0', '250 2.1.5', '354']);
    assert.deepEqual(codes(await c.ask('Subject: to bob\r\n\r\nhi\r\n.\r\n')), ['250 2.0.0']);
    const [m] = await waitForMaildir(`${d.dataDir}/mail/bob`);
    assert.match(m ?? '', /^Return-Path: <>\nDelivered-To: Bob@localhost\n/);
    assert.equal(maildirMessages(`${d.dataDir}/mail/mallory`).length, 0);
  });

  test('the bare <postmaster> is accepted from anyone (RFC 5321 4.5.1) and reaches the first local domain', async () => {
    const c = await session();
    const r = await c.ask('MAIL FROM:<x@example.org>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n', 3);
    assert.deepEqual(codes(r), ['250 2.1.0', '250 2.1.5', '354']);
    assert.deepEqual(codes(await c.ask('Subject: to the postmaster\r\n\r\nhi\r\n.\r\n')), ['250 2.0.0']);
    const [m] = await waitForMaildir(`${d.dataDir}/mail/postmaster`);
    assert.match(m ?? '', /^Return-Path: <x@example.org>\nDelivered-To: postmaster@localhost\n/);
  });
});

describe('relay control with relay_networks = ["127.0.0.0/8"]', () => {
  let d: TestDaemon;
  let sink: SmtpSink;
  const chats: SmtpChat[] = [];
  before(async () => {
    sink = await SmtpSink.start({ dsn: true, pipelining: true });
    d = await startTestDaemon({
      toml: `
[smtp]
relay_networks = ["127.0.0.0/8"]
[[route]]
domain = "*"
host = "127.0.0.1:${sink.port}"
`,
    });
  });
  after(async () => {
    for (const c of chats) c.close();
    await d?.stop();
    await sink?.close();
  });

  test('a loopback client relays to any domain; DSN parameters travel with each recipient', async () => {
    const c = await ehlo(d.port, '127.0.0.3');
    chats.push(c);
    const r = await c.ask(
      'MAIL FROM:<s@example.org> RET=HDRS ENVID=env+3D1\r\n' +
        'RCPT TO:<a@far.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig-a@far.example\r\n' +
        'RCPT TO:<b@far.example> NOTIFY=NEVER\r\nDATA\r\n',
      4,
    );
    assert.deepEqual(codes(r), ['250 2.1.0', '250 2.1.5', '250 2.1.5', '354']);
    assert.deepEqual(codes(await c.ask('Subject: dsn\r\n\r\nhi\r\n.\r\n')), ['250 2.0.0']);
    await sink.waitForTransactions(1);
    const tx = sink.transactions[0];
    assert.ok(tx);
    assert.deepEqual(tx.recipients, ['a@far.example', 'b@far.example']);
    assert.ok(tx.mailParams.includes('RET=HDRS'), tx.mailParams.join(' '));
    assert.ok(tx.mailParams.includes('ENVID=env+3D1'), tx.mailParams.join(' '));
    assert.ok(tx.rcptParams[0]?.includes('NOTIFY=SUCCESS,FAILURE'), String(tx.rcptParams[0]));
    assert.ok(
      tx.rcptParams[0]?.some((p) => /^ORCPT=rfc822;orig-a@far\.example$/i.test(p)),
      String(tx.rcptParams[0]),
    );
    assert.ok(tx.rcptParams[1]?.includes('NOTIFY=NEVER'), String(tx.rcptParams[1]));
  });
});

describe('relay_networks is matched per client address', () => {
  test('a network listing only 127.0.0.2 lets 127.0.0.2 relay and not 127.0.0.1', async () => {
    const d = await startTestDaemon({ toml: '[smtp]\nrelay_networks = ["127.0.0.2/32"]\n' });
    const chats: SmtpChat[] = [];
    try {
      for (const [from, want] of [
        ['127.0.0.1', '554 5.7.1'],
        ['127.0.0.2', '250 2.1.5'],
      ] as const) {
        const c = await ehlo(d.port, from);
        chats.push(c);
        const r = await c.ask('MAIL FROM:<s@example.org>\r\nRCPT TO:<x@far.example>\r\n', 2);
        assert.deepEqual(codes(r), ['250 2.1.0', want], `from ${from}`);
      }
    } finally {
      for (const c of chats) c.close();
      await d.stop();
    }
  });
});
