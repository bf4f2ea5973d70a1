// Internationalised domain names as SMTPUTF8 clients send them (RFC 6531 allows a U-label
// "müller.test" where the configuration, which takes A-labels, says "xn--mller-kva.test"): the
// recipient's domain is the same domain in either form. Before, the U-label form matched no
// local or relay domain and the mail was refused with 554 relay access denied. A look-alike
// (another code point) is still another domain and still refused.
// Drives a real `logmta serve` over SMTP; the relay domain's route is a sink.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { maildirMessages, SmtpChat, type SpawnedDaemon, spawnDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';

describe('IDN domains in U-label form (SMTPUTF8)', () => {
  let d: SpawnedDaemon;
  let sink: SmtpSink;

  before(async () => {
    sink = await SmtpSink.start({});
    d = await spawnDaemon({
      toml: `
[smtp]
relay_domains = ["xn--bckup-gra.test"]
[[local]]
domain = "xn--mller-kva.test"
[[route]]
domain = "xn--bckup-gra.test"
host = "127.0.0.1:${sink.port}"
`,
    });
  });

  after(async () => {
    await d.stop();
    await sink.close();
  });

  async function send(rcpt: string): Promise<string[]> {
    const { chat } = await SmtpChat.open(d.port);
    try {
      await chat.ask('EHLO idn.example\r\n');
      const r = await chat.ask(`MAIL FROM:<s@sender.example> SMTPUTF8\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`, 3);
      if (!r[2]?.startsWith('354')) return r;
      const [end = ''] = await chat.ask('Subject: idn\r\n\r\nhallo\r\n.\r\n');
      return [...r, end];
    } finally {
      chat.close();
    }
  }

  test('a local domain written as its U-label reaches the local Maildir', async () => {
    const r = await send('hans@m\u00fcller.test');
    assert.match(r[1] ?? '', /^250 /, r.join(' | '));
    assert.match(r[3] ?? '', /^250 /, r.join(' | '));
    await waitFor(() => maildirMessages(join(d.dataDir, 'mail', 'hans')).length === 1, "hans's Maildir");
  });

  test('a relay domain written as its U-label goes to its route, in A-label form', async () => {
    const r = await send('kim@B\u00c4CKUP.test');
    assert.match(r[3] ?? '', /^250 /, r.join(' | '));
    await sink.waitForTransactions(1);
    assert.deepEqual(sink.transactions[0]!.recipients, ['kim@xn--bckup-gra.test']);
  });

  test('a look-alike of the relay domain (Cyrillic a) is still refused', async () => {
    const r = await send('kim@b\u0430ckup.test');
    assert.match(r[1] ?? '', /^554 5\.7\.1 /, r.join(' | '));
  });
});
