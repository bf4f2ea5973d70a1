// DKIM signing of outgoing mail, as a postmaster meets it: a real `logmta serve` with an RSA-2048
// and an Ed25519 [[dkim]] key for example.org, the public keys served by a real DNS server
// (unbound), and the mail it relays checked by two independent verifiers from Debian — dkimpy
// and opendkim. Mail from outside, or with a From: of another domain, is left unsigned. All of
// it twice: with the SMTP sessions on the main thread and in their own (smtp.session_thread),
// where a message of several MiB has crossed to the main thread's spool before it is signed and
// is read back from there (sessions/thread-sink.ts).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTempDir, maildirMessages, type SpawnedDaemon, spawnDaemon, waitFor } from '../support/daemon.js';
import {
  dkimpyMissing,
  dkimpyVerify,
  ed25519Key,
  firstSignature,
  opendkimMissing,
  opendkimVerify,
  rsaKey,
  signedFields,
} from '../support/dkim-tools.js';
import { hasUnbound, startDnsServer, type TestDnsServer, txt } from '../support/dns-server.js';
import { SmtpSink } from '../support/sink.js';
import { sendRaw } from '../support/smtp-send.js';

const dkimpySkip = await dkimpyMissing();
const skip = !hasUnbound() ? 'unbound not installed' : (dkimpySkip ?? opendkimMissing() ?? false);

function message(from: string, subject: string, bodyLines: string[] = []): string {
  return [
    `From: Alice <${from}>`,
    'To: Bob <bob@remote.test>',
    `Subject: ${subject}`,
    'Date: Tue, 01 Dec 2026 10:00:00 +0000',
    `Message-ID: <${subject.replace(/\W/g, '')}@example.org>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Hello Bob,',
    '',
    '.a line that starts with a dot, and trailing spaces   ',
    ...bodyLines,
    '',
    '',
  ].join('\r\n');
}

for (const thread of [false, true]) {
  const where = thread ? ' (sessions in their own thread)' : '';

  describe(`DKIM signing of outgoing mail, checked by dkimpy and opendkim${where}`, { skip }, () => {
    let dns: TestDnsServer;
    let sink: SmtpSink;
    let d: SpawnedDaemon;
    let dir: string;

    before(async () => {
      const rsa = rsaKey(2048);
      const ed = ed25519Key();
      dns = await startDnsServer({
        zones: ['example.org'],
        records: [txt('s1._domainkey.example.org', rsa.record), txt('e1._domainkey.example.org', ed.record)],
      });
      sink = await SmtpSink.start({});
      dir = makeTempDir();
      d = await spawnDaemon({
        dir,
        files: { 's1.pem': rsa.pem, 'e1.pem': ed.pem },
        toml: `
  [smtp]
  session_thread = ${thread}
  listen = ["127.0.0.1:0"]
  submission = ["127.0.0.1:0"]
  relay_networks = ["127.0.0.1/32"]
  [[user]]
  name = "alice"
  password = "alice-pw"
  [dns]
  servers = ["${dns.address}"]
  [[dkim]]
  domain = "example.org"
  selector = "s1"
  key_file = "s1.pem"
  [[dkim]]
  domain = "example.org"
  selector = "e1"
  key_file = "e1.pem"
  [[local]]
  domain = "local.test"
  [[route]]
  domain = "*"
  host = "127.0.0.1:${sink.port}"
  `,
      });
    });
    after(async () => {
      await d?.stop();
      await sink?.close();
      await dns?.stop();
    });

    async function relayed(subject: string): Promise<Buffer> {
      await waitFor(
        () => sink.transactions.some((t) => t.data.includes(`Subject: ${subject}`)),
        `"${subject}" at the sink`,
      );
      const t = sink.transactions.find((x) => x.data.includes(`Subject: ${subject}`));
      return t?.data as Buffer;
    }

    async function bothVerify(data: Buffer) {
      const file = join(dir, `check-${Date.now()}-${Math.random()}.eml`);
      writeFileSync(file, data);
      return { dkimpy: await dkimpyVerify(data, dns), opendkim: await opendkimVerify(file, dns) };
    }

    const passes = [
      { result: 'pass', domain: 'example.org', selector: 's1' },
      { result: 'pass', domain: 'example.org', selector: 'e1' },
    ];

    test('mail relayed for relay_networks is signed with both keys, and dkimpy and opendkim accept both', async () => {
      const r = await sendRaw(d.port, {
        from: 'alice@example.org',
        to: ['bob@remote.test'],
        data: message('alice@example.org', 'relay one'),
      });
      assert.match(r.final, /^250 /);
      const data = await relayed('relay one');
      const v = await bothVerify(data);
      assert.deepEqual(v.dkimpy, passes);
      assert.deepEqual(
        v.opendkim.sort((a, b) => b.selector.localeCompare(a.selector)),
        passes,
      );
      assert.match(firstSignature(data), /c=relaxed\/relaxed/);
      const h = signedFields(data);
      assert.equal(h.filter((x) => x === 'from').length, 2, 'From is oversigned');
      for (const f of ['subject', 'date', 'to', 'message-id', 'mime-version', 'content-type'])
        assert.ok(h.includes(f), f);
    });

    test('a 3 MiB message (streamed to the queue before it is signed) is signed over all of it', async () => {
      const lines = Array.from({ length: 40_000 }, (_, i) =>
        `${i % 50 === 7 ? '.' : ''}line ${i} `.padEnd(78, 'x'),
      );
      const r = await sendRaw(d.port, {
        from: 'alice@example.org',
        to: ['bob@remote.test'],
        data: message('alice@example.org', 'big six', lines),
      });
      assert.match(r.final, /^250 /);
      const data = await relayed('big six');
      assert.ok(data.length > 3 * 1024 * 1024, `${data.length} octets relayed`);
      assert.ok(data.includes(`\r\n${lines[39_999]}\r\n`), 'the last line arrived');
      const v = await bothVerify(data);
      assert.deepEqual(v.dkimpy, passes);
      assert.equal(v.opendkim.filter((x) => x.result === 'pass').length, 2);
    });

    test('an authenticated submission is signed the same way', async () => {
      const r = await sendRaw(d.submissionPort ?? 0, {
        from: 'alice@example.org',
        to: ['carol@remote.test'],
        data: message('alice@example.org', 'submitted two'),
        localAddress: '127.0.0.3',
        auth: { user: 'alice', password: 'alice-pw' },
      });
      assert.match(r.final, /^250 /);
      const v = await bothVerify(await relayed('submitted two'));
      assert.deepEqual(v.dkimpy, passes);
      assert.equal(v.opendkim.filter((x) => x.result === 'pass').length, 2);
    });

    test('a From: added to a signed message makes both verifiers fail it (From is oversigned)', async () => {
      await sendRaw(d.port, {
        from: 'alice@example.org',
        to: ['bob@remote.test'],
        data: message('alice@example.org', 'tamper three'),
      });
      const data = (await relayed('tamper three')).toString('latin1');
      const forged = Buffer.from(data.replace('\r\n\r\n', '\r\nFrom: ceo@example.org\r\n\r\n'), 'latin1');
      const v = await bothVerify(forged);
      assert.deepEqual(
        v.dkimpy.map((x) => x.result),
        ['fail', 'fail'],
      );
      assert.deepEqual(
        v.opendkim.map((x) => x.result),
        ['fail', 'fail'],
      );
    });

    test('mail from outside relay_networks, and relayed mail from another domain, is not signed', async () => {
      const outside = await sendRaw(d.port, {
        from: 'someone@elsewhere.test',
        to: ['dave@local.test'],
        data: message('alice@example.org', 'outside four'),
        localAddress: '127.0.0.2',
      });
      assert.match(outside.final, /^250 /);
      const box = join(d.dataDir, 'mail', 'dave');
      await waitFor(() => maildirMessages(box).length === 1, 'the local delivery');
      assert.doesNotMatch(maildirMessages(box)[0] ?? '', /^DKIM-Signature:/m);
      await sendRaw(d.port, {
        from: 'alice@other.test',
        to: ['bob@remote.test'],
        data: message('alice@other.test', 'other five'),
      });
      assert.doesNotMatch((await relayed('other five')).toString('latin1'), /^DKIM-Signature:/m);
    });
  });
}
