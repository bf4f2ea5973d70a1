// DNS blocklists through a real `logmta serve` and a real DNS server (unbound) serving the list:
// a listed client is refused with a reply naming the list — at RCPT, or at connect (554
// greeting, then the reason at MAIL) — while unlisted clients, relay_networks clients, answers
// outside the match set and a list whose DNS fails let mail through.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { maildirMessages, type SpawnedDaemon, SmtpChat, spawnDaemon, waitFor } from '../support/daemon.js';
import { hasUnbound, startDnsServer, type TestDnsServer, txt } from '../support/dns-server.js';
import { sendRaw } from '../support/smtp-send.js';

const skip = hasUnbound() ? false : 'unbound not installed';
const mail = (subject: string) => `From: <a@sender.test>\r\nSubject: ${subject}\r\n\r\nhi\r\n`;

const config = (dns: TestDnsServer, lists: string) => `
[smtp]
listen = ["127.0.0.1:0"]
relay_networks = ["127.0.0.1/32"]
[dns]
servers = ["${dns.address}"]
timeout = "1s"
attempts = 1
[[local]]
domain = "local.test"
${lists}
`;

describe('DNSBL checks', { skip }, () => {
  let dns: TestDnsServer;
  let atRcpt: SpawnedDaemon;
  let atConnect: SpawnedDaemon;

  before(async () => {
    dns = await startDnsServer({
      zones: ['bl.test', 'strict-bl.test'],
      refused: ['down-bl.test'],
      records: [
        '2.0.0.127.bl.test. 300 IN A 127.0.0.2',
        txt('2.0.0.127.bl.test', 'listed for testing; see https://bl.test/'),
        '4.0.0.127.bl.test. 300 IN A 127.255.255.254',
        '5.0.0.127.strict-bl.test. 300 IN A 127.0.0.9',
        '1.0.0.127.bl.test. 300 IN A 127.0.0.2',
      ],
    });
    [atRcpt, atConnect] = await Promise.all([
      spawnDaemon({
        toml: config(
          dns,
          '[[dnsbl]]\nzone = "down-bl.test"\n[[dnsbl]]\nzone = "bl.test"\n[[dnsbl]]\nzone = "strict-bl.test"\nmatch = ["127.0.0.2"]\n' +
            '[[user]]\nname = "home"\npassword = "home-pw"\n',
        ),
      }),
      spawnDaemon({ toml: config(dns, '[[dnsbl]]\nzone = "bl.test"\nat = "connect"\n') }),
    ]);
  });
  after(async () => {
    await Promise.all([atRcpt?.stop(), atConnect?.stop()]);
    await dns?.stop();
  });

  test('a listed client gets 554 5.7.1 at RCPT, naming the list and its reason', async () => {
    const r = await sendRaw(atRcpt.port, {
      from: 'a@sender.test',
      to: ['u1@local.test'],
      data: mail('listed'),
      localAddress: '127.0.0.2',
    });
    assert.match(r.greeting, /^220 /, 'checked at RCPT: the greeting is the usual one');
    assert.match(r.replies[1] ?? '', /^250 /, 'MAIL is accepted');
    assert.match(
      r.replies[2] ?? '',
      /^554 5\.7\.1 Service unavailable; client \[127\.0\.0\.2\] blocked using bl\.test; listed for testing/,
      'the RCPT gets the refusal',
    );
    assert.equal(r.replies.length, 3, 'no DATA for a transaction without recipients');
    assert.deepEqual(maildirMessages(join(atRcpt.dataDir, 'mail', 'u1')), []);
  });

  test('a listed client that authenticates is not checked at RCPT: a home address can still submit', async () => {
    const r = await sendRaw(atRcpt.port, {
      from: 'home@local.test',
      to: ['u6@local.test'],
      data: mail('authenticated'),
      localAddress: '127.0.0.2',
      auth: { user: 'home', password: 'home-pw' },
    });
    assert.match(r.replies[1] ?? '', /^235 /, 'AUTH succeeded');
    assert.match(r.final, /^250 /, JSON.stringify(r.replies));
    await waitFor(() => maildirMessages(join(atRcpt.dataDir, 'mail', 'u6')).length === 1, "u6's mail");
  });

  test('unlisted clients, error answers, answers outside the match set and a failing list let mail through', async () => {
    // 127.0.0.3: not listed; .4: only an error answer; .5: listed by a code strict-bl.test does not match.
    for (const [ip, user] of [
      ['127.0.0.3', 'u2'],
      ['127.0.0.4', 'u3'],
      ['127.0.0.5', 'u4'],
    ] as const) {
      const r = await sendRaw(atRcpt.port, {
        from: 'a@sender.test',
        to: [`${user}@local.test`],
        data: mail(user),
        localAddress: ip,
      });
      assert.match(r.final, /^250 /, `${ip}: ${r.final}`);
      await waitFor(() => maildirMessages(join(atRcpt.dataDir, 'mail', user)).length === 1, `${user}'s mail`);
    }
  });

  test('a client in relay_networks is not checked, though listed', async () => {
    const r = await sendRaw(atRcpt.port, {
      from: 'a@sender.test',
      to: ['u5@local.test'],
      data: mail('inside'),
      localAddress: '127.0.0.1',
    });
    assert.match(r.final, /^250 /);
  });

  test('checked at connect, a listed client is greeted with 554 and every MAIL names the list', async () => {
    const chat = await SmtpChat.connect(atConnect.port, '127.0.0.1', '127.0.0.2');
    try {
      const [greeting = ''] = await chat.read(1);
      assert.match(greeting, /^554 /);
      const [ehlo, mailFrom] = await chat.ask('EHLO c.test\r\nMAIL FROM:<a@sender.test>\r\n', 2);
      assert.match(ehlo ?? '', /^250/);
      assert.match(mailFrom ?? '', /^554 5\.7\.1 .*blocked using bl\.test/);
    } finally {
      chat.close();
    }
    const ok = await SmtpChat.connect(atConnect.port, '127.0.0.1', '127.0.0.3');
    try {
      const [greeting = ''] = await ok.read(1);
      assert.match(greeting, /^220 /);
    } finally {
      ok.close();
    }
  });
});
