// SPF, DKIM and DMARC checks of incoming mail through a real `logmta serve`: the "outside" sender
// signs with dkimpy, its DNS (SPF, DKIM key, DMARC policy) is served by a real DNS server
// (unbound), and the mail is sent from 127.0.0.2 (outside relay_networks). What the postmaster
// sees: the Authentication-Results field in the delivered message, forged ones claiming our
// authserv-id gone, and — only when configured — 550/451 replies to the final dot, with nothing
// delivered and nothing bounced.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeTempDir, maildirMessages, type SpawnedDaemon, spawnDaemon, waitFor } from '../support/daemon.js';
import { dkimpyMissing, dkimpySign, ed25519Key, rsaKey } from '../support/dkim-tools.js';
import { hasUnbound, startDnsServer, type TestDnsServer, txt } from '../support/dns-server.js';
import { sendRaw } from '../support/smtp-send.js';

const skip = !hasUnbound() ? 'unbound not installed' : ((await dkimpyMissing()) ?? false);
const OUTSIDE = '127.0.0.2';

function message(from: string, subject: string, extra: string[] = []): string {
  return [
    ...extra,
    `From: <${from}>`,
    'To: <u@local.test>',
    `Subject: ${subject}`,
    'Date: Tue, 01 Dec 2026 10:00:00 +0000',
    `Message-ID: <${subject.replace(/\W/g, '')}@sender.test>`,
    '',
    'Hello.',
    '',
  ].join('\r\n');
}

/** The header fields of a delivered message named `name` (case-insensitive), unfolded. */
function fields(msg: string, name: string): string[] {
  const text = msg.replace(/\r\n/g, '\n'); // a Maildir file has LF line ends
  const head = text.slice(0, text.indexOf('\n\n'));
  return head
    .replace(/\n[ \t]+/g, ' ')
    .split('\n')
    .filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
}

const config = (dns: TestDnsServer, auth: string) => `
hostname = "mx.test"
[smtp]
listen = ["127.0.0.1:0"]
relay_networks = ["127.0.0.1/32"]
[dns]
servers = ["${dns.address}"]
timeout = "1s"
attempts = 1
[auth]
checks = true
${auth}
[[local]]
domain = "local.test"
`;

describe('SPF, DKIM and DMARC checks of mail from outside', { skip }, () => {
  let dns: TestDnsServer;
  let annotate: SpawnedDaemon;
  let strict: SpawnedDaemon;
  let keyFile: string;
  let edFile: string;
  let n = 0;

  before(async () => {
    const key = rsaKey(2048);
    const dir = makeTempDir();
    keyFile = join(dir, 'sender.pem');
    writeFileSync(keyFile, key.pem);
    const ed = ed25519Key();
    edFile = join(dir, 'sender-ed.seed');
    writeFileSync(edFile, ed.seed ?? '');
    dns = await startDnsServer({
      zones: ['sender.test', 'strict.test', 'relaxed.test'],
      refused: ['dnsdown.test'],
      records: [
        txt('sender.test', `v=spf1 ip4:${OUTSIDE} -all`),
        txt('out.sender.test', `v=spf1 ip4:${OUTSIDE} -all`),
        txt('forged.sender.test', 'v=spf1 ip4:192.0.2.1 -all'),
        txt('out._domainkey.sender.test', key.record),
        txt('oute._domainkey.sender.test', ed.record),
        txt('_dmarc.sender.test', 'v=DMARC1; p=reject'),
        txt('strict.test', 'v=spf1 ip4:192.0.2.1 -all'),
        txt('_dmarc.strict.test', 'v=DMARC1; p=reject'),
        txt('relaxed.test', 'v=spf1 ip4:192.0.2.1 -all'),
        txt('_dmarc.relaxed.test', 'v=DMARC1; p=none'),
      ],
    });
    [annotate, strict] = await Promise.all([
      spawnDaemon({ toml: config(dns, '') }),
      spawnDaemon({ toml: config(dns, 'dmarc_reject = true\ntempfail_on_dns_error = true') }),
    ]);
  });
  after(async () => {
    await Promise.all([annotate?.stop(), strict?.stop()]);
    await dns?.stop();
  });

  /** Sends from outside to a fresh local user and returns the final reply and the delivered mail. */
  async function deliver(d: SpawnedDaemon, from: string, data: string | Buffer, helo = 'out.sender.test') {
    const user = `u${++n}`;
    const r = await sendRaw(d.port, {
      from,
      to: [`${user}@local.test`],
      data,
      localAddress: OUTSIDE,
      helo,
    });
    const box = join(d.dataDir, 'mail', user);
    if (!r.final.startsWith('250')) return { reply: r.final, box, mail: undefined };
    await waitFor(() => maildirMessages(box).length === 1, `the delivery to ${user}`);
    return { reply: r.final, box, mail: maildirMessages(box)[0] as string };
  }

  test('signed mail from a permitted address passes SPF, DKIM and DMARC, said in Authentication-Results', async () => {
    // Signed twice by dkimpy, as the sender's MTA: RSA-2048, then Ed25519 (RFC 8463).
    const rsaSigned = await dkimpySign(
      message('alice@sender.test', 'good one'),
      'out',
      'sender.test',
      keyFile,
    );
    const signed = await dkimpySign(rsaSigned, 'oute', 'sender.test', edFile, 'ed25519');
    const { mail } = await deliver(annotate, 'alice@sender.test', signed);
    const ar = fields(mail ?? '', 'Authentication-Results');
    assert.equal(ar.length, 1, ar.join('\n'));
    assert.match(ar[0] ?? '', /^Authentication-Results: mx\.test; /);
    assert.match(ar[0] ?? '', /spf=pass .*smtp\.mailfrom=alice@sender\.test/);
    assert.match(ar[0] ?? '', /dkim=pass [^;]*header\.s=out header\.a=rsa-sha256/);
    assert.match(ar[0] ?? '', /dkim=pass [^;]*header\.s=oute header\.a=ed25519-sha256/);
    assert.match(ar[0] ?? '', /dmarc=pass .*header\.from=sender\.test/);
  });

  test('a signature broken on the way does not pass; DMARC still passes on aligned SPF', async () => {
    const signed = (
      await dkimpySign(message('alice@sender.test', 'broken ten'), 'out', 'sender.test', keyFile)
    ).toString('latin1');
    const { mail } = await deliver(
      annotate,
      'alice@sender.test',
      signed.replace('Hello.', 'Hello, altered.'),
    );
    const ar = fields(mail ?? '', 'Authentication-Results')[0] ?? '';
    assert.match(ar, /dkim=(fail|neutral) \(body hash did not verify\)/);
    assert.match(ar, /spf=pass /);
    assert.match(ar, /dmarc=pass /);
  });

  test("a forged Authentication-Results with our authserv-id is removed; another host's is kept", async () => {
    const forged = message('alice@sender.test', 'forged two', [
      'Authentication-Results: MX.TEST; dmarc=pass header.from=sender.test',
      'Authentication-Results: other.example;',
      '\tspf=pass smtp.mailfrom=sender.test',
      'Authentication-Results: (comment) mx.test; dkim=pass',
    ]);
    const { mail } = await deliver(annotate, 'alice@sender.test', forged);
    const ar = fields(mail ?? '', 'Authentication-Results');
    assert.equal(ar.length, 2, ar.join('\n'));
    assert.match(ar[0] ?? '', /^Authentication-Results: mx\.test;\s+spf=pass/);
    assert.match(ar[0] ?? '', /dkim=none/);
    assert.equal(ar[1], 'Authentication-Results: other.example; spf=pass smtp.mailfrom=sender.test');
    assert.ok((mail ?? '').includes('Subject: forged two'));
  });

  test('by default a DMARC p=reject failure is delivered, annotated dmarc=fail', async () => {
    const { reply, mail } = await deliver(
      annotate,
      'ceo@strict.test',
      message('ceo@strict.test', 'spoof three'),
    );
    assert.match(reply, /^250 /);
    const ar = fields(mail ?? '', 'Authentication-Results')[0] ?? '';
    assert.match(ar, /spf=fail/);
    assert.match(ar, /dmarc=fail .*header\.from=strict\.test/);
  });

  test('with dmarc_reject the same mail gets 550 5.7.1 at the final dot and is neither delivered nor bounced', async () => {
    const { reply, box } = await deliver(strict, 'ceo@strict.test', message('ceo@strict.test', 'spoof four'));
    assert.match(reply, /^550 5\.7\.1 .*DMARC.*strict\.test/);
    assert.deepEqual(maildirMessages(box), []);
    const r = await sendRaw(strict.port, {
      from: '',
      to: ['postmaster@local.test'],
      data: message('x@local.test', 'probe'),
      localAddress: OUTSIDE,
    });
    assert.match(r.final, /^250 /, 'the daemon still takes mail');
    const logged = () =>
      strict
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; id?: string; refused?: number; source?: string });
    // The log is buffered (at most 100 ms late): wait for the probe's line.
    await waitFor(() => logged().some((l) => l.msg === 'received'), 'the "received" line of the probe');
    const log = logged();
    const refused = log.filter((l) => l.msg === 'authentication' && l.refused === 550).map((l) => l.id);
    assert.equal(refused.length, 1);
    const received = log.filter((l) => l.msg === 'received');
    assert.equal(received.length, 1, 'only the probe was queued: no copy, no bounce');
    assert.notEqual(received[0]?.id, refused[0]);
  });

  test('with dmarc_reject, a p=none failure and a DMARC pass are still accepted', async () => {
    const weak = await deliver(strict, 'x@relaxed.test', message('x@relaxed.test', 'weak five'));
    assert.match(weak.reply, /^250 /);
    assert.match(fields(weak.mail ?? '', 'Authentication-Results')[0] ?? '', /dmarc=fail/);
    const signed = await dkimpySign(message('alice@sender.test', 'good six'), 'out', 'sender.test', keyFile);
    const good = await deliver(strict, 'alice@sender.test', signed);
    assert.match(good.reply, /^250 /);
  });

  test('with tempfail_on_dns_error a sender domain whose DNS fails gets 451 4.7.24; by default it is annotated', async () => {
    const t = await deliver(strict, 'a@dnsdown.test', message('a@dnsdown.test', 'dns seven'));
    assert.match(t.reply, /^451 4\.7\.24 /);
    const a = await deliver(annotate, 'a@dnsdown.test', message('a@dnsdown.test', 'dns eight'));
    assert.match(a.reply, /^250 /);
    assert.match(fields(a.mail ?? '', 'Authentication-Results')[0] ?? '', /spf=temperror/);
  });

  test('a bounce (null sender) is judged by SPF on its HELO name: pass for a permitted one, fail for a forged one', async () => {
    const ok = await deliver(annotate, '', message('mailer-daemon@sender.test', 'bounce eleven'));
    const pass = fields(ok.mail ?? '', 'Authentication-Results')[0] ?? '';
    assert.match(pass, /spf=pass [^;]*out\.sender\.test/, pass);
    const forged = await deliver(
      annotate,
      '',
      message('mailer-daemon@sender.test', 'bounce twelve'),
      'forged.sender.test',
    );
    const fail = fields(forged.mail ?? '', 'Authentication-Results')[0] ?? '';
    assert.match(fail, /spf=fail [^;]*forged\.sender\.test/, fail);
  });

  test('mail from relay_networks is not checked and gets no Authentication-Results', async () => {
    const r = await sendRaw(annotate.port, {
      from: 'a@strict.test',
      to: ['inside@local.test'],
      data: message('a@strict.test', 'inside nine'),
    });
    assert.match(r.final, /^250 /);
    const box = join(annotate.dataDir, 'mail', 'inside');
    await waitFor(() => maildirMessages(box).length === 1, 'the delivery');
    assert.deepEqual(fields(maildirMessages(box)[0] ?? '', 'Authentication-Results'), []);
  });
});
