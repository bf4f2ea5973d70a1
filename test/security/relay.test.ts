// Open-relay checks in the spirit of the classic relay testers (rlytest, the ORDB/abuse.net
// batteries): a daemon with the default policy (no relay_networks, local domain "localhost",
// one [[route]] domain) is offered %-hacks, source routes, quoted local parts with @, !-paths,
// IP literals, mixed-case and trailing-dot domains, path games on local parts, and
// unauthenticated submission. Every one must be refused, or — when it really is a local
// mailbox — delivered to that mailbox only. A catch-all route to a detector sink proves that
// nothing was relayed: the detector must end with zero transactions.
// Fails: naming the address that was accepted and the reply.

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RawClient, sleep, startTestMta, type TestMta } from '../fuzz/harness.js';
import { SmtpSink } from '../support/sink.js';

let mta: TestMta;
let routed: SmtpSink;
let detector: SmtpSink;
let subPort = 0;

before(async () => {
  routed = await SmtpSink.start({});
  detector = await SmtpSink.start({});
  mta = await startTestMta({
    toml: [
      'submission = ["127.0.0.1:0"]',
      '[[user]]',
      'name = "alice"',
      'password = "pw-alice-1"',
      '[[route]]',
      'domain = "routed.test"',
      `host = "127.0.0.1:${routed.port}"`,
      // Not policy: a catch-all route is never a relay permission (router.isRelayDomain); it
      // makes any message that did get relayed land in the detector instead of DNS.
      '[[route]]',
      'domain = "*"',
      `host = "127.0.0.1:${detector.port}"`,
    ].join('\n'),
  });
  const sub = mta.daemon.addresses.submission[0] ?? '';
  subPort = Number(sub.slice(sub.lastIndexOf(':') + 1));
});

after(async () => {
  await mta.stop();
  await routed.close();
  await detector.close();
});

/** One transaction attempt; returns the RCPT reply and, when accepted, the end-of-data reply. */
async function attempt(rcpt: string, port = mta.port): Promise<{ rcpt: string; data?: string }> {
  const c = await RawClient.connect(port);
  try {
    await c.waitFor(/^220 .*\r\n/);
    await c.command('EHLO relaytest.example');
    const mail = await c.command('MAIL FROM:<spammer@evil.test>');
    if (!mail.startsWith('250')) return { rcpt: mail };
    const r = await c.command(`RCPT TO:${rcpt}`);
    if (!r.startsWith('250')) return { rcpt: r };
    const d = await c.command('DATA');
    if (!d.startsWith('354')) return { rcpt: r, data: d };
    const end = await c.command('Subject: relay test\r\n\r\nrelay probe\r\n.');
    await c.command('QUIT');
    return { rcpt: r, data: end };
  } finally {
    c.destroy();
  }
}

const mailRoot = (): string => path.join(mta.dir, 'mail');
const mailboxes = (): string[] => (existsSync(mailRoot()) ? readdirSync(mailRoot()).sort() : []);
function messagesIn(user: string): number {
  const dir = path.join(mailRoot(), user, 'new');
  return existsSync(dir) ? readdirSync(dir).length : 0;
}

async function waitFor(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(20);
  return cond();
}

const REFUSED: string[] = [
  '<user%evil.test@localhost>',
  '<user%evil.test@[127.0.0.1]>',
  '<"user%evil.test"@localhost>',
  '<@localhost:user@evil.test>',
  '<@mx.test,@localhost:user@evil.test>',
  '<@routed.test:user@evil.test>',
  '<"user@evil.test"@localhost>',
  '<"user@evil.test">',
  '<evil.test!user@localhost>',
  '<evil.test!user>',
  '<user@evil.test@localhost>',
  '<user@[1.2.3.4]>',
  '<user@[127.0.0.1]>',
  '<user@[IPv6:::1]>',
  '<USER@EVIL.TEST.>',
  '<user@evil.test>',
  '<user@Evil.Test>',
  '<user@localhost.evil.test>',
  '<user@evil.test.localhost>',
  '<user@sub.routed.test>',
  '<user%evil.test@routed.test>',
  '<evil.test!user@routed.test>',
  '<"user@evil.test"@routed.test>',
  '<user@evil.test%localhost>',
  '<user>',
  '<../../etc/passwd@localhost>',
  '<.hidden@localhost>',
  '<a..b@localhost>',
  '<a/b@localhost>',
  'user@evil.test',
];

describe('open-relay battery against the default policy', () => {
  for (const rcpt of REFUSED) {
    test(`RCPT TO:${rcpt} is refused`, async () => {
      const r = await attempt(rcpt);
      assert.match(r.rcpt, /^5\d\d /, `${rcpt} got ${JSON.stringify(r)}`);
    });
  }

  test('trailing-dot domains are refused as bad syntax, local or routed', async () => {
    for (const rcpt of ['<user@LocalHost.>', '<someone@routed.test.>']) {
      const r = await attempt(rcpt);
      assert.match(r.rcpt, /^501 /, `${rcpt} got ${JSON.stringify(r)}`);
    }
  });

  test('mixed-case forms of a local domain reach the local mailbox only', async () => {
    for (const [rcpt, user] of [
      ['<LocalUser@LocalHost>', 'localuser'],
      ['<bob@LOCALHOST>', 'bob'],
    ] as const) {
      const r = await attempt(rcpt);
      assert.match(r.rcpt, /^250 /, rcpt);
      assert.match(r.data ?? '', /^250 /, rcpt);
      assert.ok(
        await waitFor(() => messagesIn(user) === 1),
        `${rcpt} not delivered to maildir ${user}: ${mailboxes().join(',')}`,
      );
    }
  });

  test('the configured route domain is relayed (positive control), in any case', async () => {
    const r = await attempt('<Someone@ROUTED.test>');
    assert.match(r.data ?? '', /^250 /, JSON.stringify(r));
    await routed.waitForTransactions(1);
    assert.equal(routed.transactions.length, 1);
    assert.match(routed.transactions[0]?.recipients[0] ?? '', /^Someone@ROUTED\.test$/);
  });

  test('MAIL on the submission port without AUTH is refused with 530', async () => {
    const c = await RawClient.connect(subPort);
    try {
      await c.waitFor(/^220 .*\r\n/);
      await c.command('EHLO relaytest.example');
      assert.match(await c.command('MAIL FROM:<spammer@evil.test>'), /^530 /);
      assert.match(await c.command('RCPT TO:<user@evil.test>'), /^503 /);
      assert.match(await c.command('DATA'), /^5\d\d /);
    } finally {
      c.destroy();
    }
  });

  test('after AUTH the same client may relay (policy allows it); without it, not', async () => {
    const c = await RawClient.connect(mta.port);
    try {
      await c.waitFor(/^220 .*\r\n/);
      await c.command('EHLO relaytest.example');
      await c.command('MAIL FROM:<alice@localhost>');
      assert.match(await c.command('RCPT TO:<user@evil.test>'), /^554 5\.7\.1 /);
      await c.command('RSET');
      const token = Buffer.from('\0alice\0pw-alice-1').toString('base64');
      assert.match(await c.command(`AUTH PLAIN ${token}`), /^235 /);
      await c.command('MAIL FROM:<alice@localhost>');
      assert.match(await c.command('RCPT TO:<user@evil.test>'), /^250 /);
      await c.command('RSET');
    } finally {
      c.destroy();
    }
  });

  test('nothing was relayed: the catch-all detector received no mail and no stray mailbox exists', async () => {
    // Let any delivery of the earlier tests run.
    await sleep(300);
    assert.equal(
      detector.transactions.length,
      0,
      JSON.stringify(detector.transactions.map((t) => t.recipients)),
    );
    assert.equal(detector.connections, 0);
    for (const m of mailboxes()) assert.ok(['localuser', 'bob'].includes(m), `unexpected mailbox ${m}`);
    const attempts = mta.logs.filter((l) => l.includes('"delivery attempt"'));
    for (const l of attempts) assert.doesNotMatch(l, /evil\.test/, l);
  });
});
