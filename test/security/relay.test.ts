// Open-relay battery in the spirit of the classic relay testers (rlytest, the ORDB/abuse.net
// batteries), against a real `logmta serve` over real SMTP. The configuration is the dangerous
// one: [[route]]s for foreign domains (gmail.test and evil.test through a "smarthost", plus the
// catch-all "*"), one explicit relay domain (backup.test, a backup-MX use) with its own route,
// the local domain localhost, no relay_networks. Routing is not acceptance: a route grants
// nothing, so every %-hack, bang path, source route, quoted local part with @, trailing dot,
// mixed case, IP literal, subdomain, foreign postmaster and null-sender attempt must be refused
// (or — where it really names a relay-domain or local mailbox — delivered there only). All
// foreign routes point at one detector sink, which must end with no connection at all; a final
// authenticated send through the same route proves the detector was reachable.
// Fails: naming the address that was accepted and the replies.

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { codeOf, SmtpChat, type SpawnedDaemon, spawnDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';

let d: SpawnedDaemon;
let backup: SmtpSink;
let foreign: SmtpSink;

before(async () => {
  backup = await SmtpSink.start({});
  foreign = await SmtpSink.start({});
  d = await spawnDaemon({
    toml: [
      'hostname = "mx.test"',
      '[smtp]',
      'listen = ["127.0.0.1:0"]',
      'submission = ["127.0.0.1:0"]',
      'relay_domains = ["backup.test"]',
      '[queue]',
      'retry = ["1h"]',
      '[[user]]',
      'name = "alice"',
      'password = "pw-alice-1"',
      '[[local]]',
      'domain = "localhost"',
      '[[route]]',
      'domain = "backup.test"',
      `host = "127.0.0.1:${backup.port}"`,
      ...['gmail.test', 'evil.test', '*'].flatMap((domain) => [
        '[[route]]',
        `domain = "${domain}"`,
        `host = "127.0.0.1:${foreign.port}"`,
      ]),
    ].join('\n'),
  });
});

after(async () => {
  await d.stop();
  await backup.close();
  await foreign.close();
});

interface Attempt {
  rcpt: string;
  data?: string;
}

/** One transaction attempt on a fresh connection; the RCPT reply and, if accepted, the final reply. */
async function attempt(rcpt: string, from = '<spammer@evil.test>', port = d.port): Promise<Attempt> {
  const { chat } = await SmtpChat.open(port);
  try {
    await chat.ask('EHLO relaytest.example\r\n');
    const [mail = ''] = await chat.ask(`MAIL FROM:${from}\r\n`);
    if (!mail.startsWith('250')) return { rcpt: mail };
    const [r = ''] = await chat.ask(`RCPT TO:${rcpt}\r\n`);
    if (!r.startsWith('250')) return { rcpt: r };
    const [data = ''] = await chat.ask('DATA\r\n');
    if (!data.startsWith('354')) return { rcpt: r, data };
    const [end = ''] = await chat.ask(`Subject: relay probe ${rcpt}\r\n\r\nrelay probe\r\n.\r\n`);
    await chat.ask('QUIT\r\n');
    return { rcpt: r, data: end };
  } finally {
    chat.close();
  }
}

const mailRoot = (): string => path.join(d.dataDir, 'mail');
const mailboxes = (): string[] => (existsSync(mailRoot()) ? readdirSync(mailRoot()).sort() : []);
function messagesIn(user: string): number {
  const dir = path.join(mailRoot(), user, 'new');
  return existsSync(dir) ? readdirSync(dir).length : 0;
}

const REFUSED: string[] = [
  // A routed foreign domain, in every case.
  '<user@gmail.test>',
  '<USER@GMAIL.TEST>',
  '<user@GMail.Test>',
  '<user@evil.test>',
  '<user@unrouted.test>',
  // The percent hack, against a local domain, the relay domain and an IP literal.
  '<user%gmail.test@localhost>',
  '<user%gmail.test@backup.test>',
  '<user%gmail.test@BACKUP.TEST>',
  '<user%gmail.test@[127.0.0.1]>',
  '<"user%gmail.test"@localhost>',
  '<"user%gmail.test"@backup.test>',
  '<user@gmail.test%localhost>',
  '<user@gmail.test%backup.test>',
  // Bang (UUCP) paths.
  '<gmail.test!user@localhost>',
  '<gmail.test!user@backup.test>',
  '<"gmail.test!user"@backup.test>',
  '<gmail.test!user>',
  '<backup.test!gmail.test!user>',
  // Source routes whose final mailbox is foreign (the route is dropped, RFC 5321 C).
  '<@localhost:user@gmail.test>',
  '<@backup.test:user@gmail.test>',
  '<@mx.test,@backup.test:user@gmail.test>',
  '<@[127.0.0.1]:user@gmail.test>',
  // Quoted local parts holding an @ (or an escaped one).
  '<"user@gmail.test"@localhost>',
  '<"user@gmail.test"@backup.test>',
  '<"user\\@gmail.test"@backup.test>',
  '<"user@gmail.test"@[127.0.0.1]>',
  '<"user@gmail.test">',
  '<user@gmail.test@backup.test>',
  '<user@gmail.test@localhost>',
  // IP literals, ours and others.
  '<user@[127.0.0.1]>',
  '<user@[1.2.3.4]>',
  '<user@[IPv6:::1]>',
  '<user@[IPv6:::ffff:127.0.0.1]>',
  // Subdomains and look-alikes of the relay domain and of local/routed domains.
  '<user@sub.backup.test>',
  '<user@backup.test.gmail.test>',
  '<user@xbackup.test>',
  '<user@mail.gmail.test>',
  '<user@localhost.gmail.test>',
  '<user@gmail.test.localhost>',
  // Another domain's postmaster is not ours.
  '<postmaster@gmail.test>',
  '<Postmaster@GMAIL.test>',
  // No domain at all, or no angle brackets.
  '<user>',
  'user@gmail.test',
  // Path games on local parts.
  '<../../etc/passwd@localhost>',
  '<.hidden@localhost>',
  '<a..b@localhost>',
  '<a/b@localhost>',
];

describe('open-relay battery against routes for foreign domains (logmta serve)', () => {
  for (const rcpt of REFUSED) {
    test(`RCPT TO:${rcpt} is refused`, async () => {
      const r = await attempt(rcpt);
      assert.match(r.rcpt, /^5\d\d /, `${rcpt} got ${JSON.stringify(r)}`);
    });
  }

  test('trailing-dot domains are refused as bad syntax: local, relay domain or routed', async () => {
    for (const rcpt of ['<user@LocalHost.>', '<someone@backup.test.>', '<someone@gmail.test.>']) {
      const r = await attempt(rcpt);
      assert.match(r.rcpt, /^501 /, `${rcpt} got ${JSON.stringify(r)}`);
    }
  });

  test('the null sender, a local sender and the postmaster sender relay no better', async () => {
    for (const from of ['<>', '<alice@localhost>', '<postmaster@localhost>', '<postmaster@backup.test>']) {
      for (const rcpt of ['<user@gmail.test>', '<user%gmail.test@backup.test>']) {
        const r = await attempt(rcpt, from);
        assert.match(r.rcpt, /^554 5\.7\.1 /, `MAIL FROM:${from} RCPT TO:${rcpt} got ${JSON.stringify(r)}`);
      }
    }
  });

  test('a look-alike of the relay domain in UTF-8 (SMTPUTF8) is refused', async () => {
    const r = await attempt('<user@b\u0430ckup.test>', '<spammer@evil.test> SMTPUTF8');
    assert.match(r.rcpt, /^554 5\.7\.1 /, JSON.stringify(r));
  });

  test('MAIL on the submission port without AUTH is refused with 530', async () => {
    const { chat } = await SmtpChat.open(d.submissionPort ?? 0);
    try {
      await chat.ask('EHLO relaytest.example\r\n');
      const r = await chat.ask('MAIL FROM:<spammer@evil.test>\r\nRCPT TO:<user@gmail.test>\r\nDATA\r\n', 3);
      assert.deepEqual(r.map(codeOf), ['530 5.7.0', '503 5.5.1', '503 5.5.1']);
    } finally {
      chat.close();
    }
  });

  test('mixed-case forms of a local domain reach the local mailbox only', async () => {
    for (const [rcpt, user] of [
      ['<LocalUser@LocalHost>', 'localuser'],
      ['<bob@LOCALHOST>', 'bob'],
    ] as const) {
      const r = await attempt(rcpt);
      assert.match(r.data ?? '', /^250 /, `${rcpt}: ${JSON.stringify(r)}`);
      await waitFor(() => messagesIn(user) === 1, `${rcpt} in maildir ${user}`);
    }
    const r = await attempt('<Postmaster>');
    assert.match(r.data ?? '', /^250 /, JSON.stringify(r));
    await waitFor(
      () => messagesIn('postmaster') === 1,
      'the bare <postmaster> in the local postmaster maildir',
    );
  });

  test('the relay domain is taken from anyone, in any case, and goes to its own route only', async () => {
    for (const rcpt of ['<Someone@BACKUP.test>', '<@gmail.test:other@backup.test>']) {
      const r = await attempt(rcpt);
      assert.match(r.data ?? '', /^250 /, `${rcpt}: ${JSON.stringify(r)}`);
    }
    await backup.waitForTransactions(2);
    assert.deepEqual(
      backup.transactions.map((t) => t.recipients),
      [['Someone@BACKUP.test'], ['other@backup.test']],
    );
  });

  test('nothing was relayed: the foreign routes saw no connection, no stray mailbox exists', async () => {
    // Every accepted message above has been delivered (or is local): the queue is empty, so no
    // delivery to the detector can still be on its way.
    await waitFor(() => backup.transactions.length === 2 && messagesIn('postmaster') === 1, 'deliveries');
    assert.equal(foreign.connections, 0, JSON.stringify(foreign.transactions.map((t) => t.recipients)));
    for (const m of mailboxes())
      assert.ok(['localuser', 'bob', 'postmaster'].includes(m), `unexpected mailbox ${m}`);
    for (const l of d
      .stdout()
      .split('\n')
      .filter((x) => x.includes('"delivery attempt"')))
      assert.doesNotMatch(l, /gmail\.test|evil\.test/, l);
  });

  test('positive control: after AUTH the same route to the detector works', async () => {
    const { chat } = await SmtpChat.open(d.port);
    try {
      await chat.ask('EHLO relaytest.example\r\n');
      const token = Buffer.from('\0alice\0pw-alice-1').toString('base64');
      assert.equal(codeOf((await chat.ask(`AUTH PLAIN ${token}\r\n`))[0] ?? ''), '235 2.7.0');
      const r = await chat.ask('MAIL FROM:<alice@localhost>\r\nRCPT TO:<friend@gmail.test>\r\nDATA\r\n', 3);
      assert.deepEqual(r.map(codeOf), ['250 2.1.0', '250 2.1.5', '354']);
      assert.equal(codeOf((await chat.ask('Subject: ok\r\n\r\nhi\r\n.\r\n'))[0] ?? ''), '250 2.0.0');
    } finally {
      chat.close();
    }
    await foreign.waitForTransactions(1);
    assert.deepEqual(foreign.transactions[0]?.recipients, ['friend@gmail.test']);
  });
});
