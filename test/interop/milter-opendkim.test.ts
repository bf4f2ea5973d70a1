// logmta with a real opendkim (Debian's package) as its milter, over TCP and over a unix socket
// ([[milter]] address = "unix:/path"): mail an authenticated
// client submits is signed by opendkim (the signature checked by an independent verifier, dkimpy,
// with the key from the tests' DNS server), and mail from outside is verified by opendkim, which
// adds its Authentication-Results: header — dkim=pass for an intact signature, dkim=fail for a
// message changed after signing.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dkimpyMissing, dkimpySign, dkimpyVerify, opendkimMissing, rsaKey } from '../support/dkim-tools.js';
import { hasUnbound, startDnsServer, type TestDnsServer, txt } from '../support/dns-server.js';
import { startTestDaemon, type TestDaemon, waitForMaildir } from '../support/daemon.js';
import { sendMessage } from '../support/mail.js';
import { type OpendkimMilter, startOpendkimMilter } from '../support/opendkim-milter.js';

const missing =
  opendkimMissing() ?? (hasUnbound() ? undefined : 'unbound not installed') ?? (await dkimpyMissing());

const crlf = (s: string) => s.replace(/\r?\n/g, '\r\n');
/** A delivered Maildir message as it was on the wire: without the lines the Maildir writer added. */
const wire = (m: string) =>
  crlf(m.replace(/^Return-Path: [^\n]*\n/, '').replace(/^Delivered-To: [^\n]*\n/, ''));

/** The daemon of every case: a submission port for alice, a local mailbox, opendkim as milter. */
function startDaemon(opendkim: OpendkimMilter): Promise<TestDaemon> {
  return startTestDaemon({
    toml: `
[smtp]
submission = ["127.0.0.1:0"]
[[user]]
name = "alice"
password = "secret"
[[local]]
domain = "local.test"
maildir = "mail/{user}"
[[milter]]
name = "opendkim"
address = "${opendkim.address}"
`,
  });
}

describe('milter: opendkim', { skip: missing }, () => {
  const signer = rsaKey();
  const outsider = rsaKey();
  let dns: TestDnsServer;
  let opendkim: OpendkimMilter;
  let d: TestDaemon;
  const box = (user: string) => join(d.dataDir, 'mail', user);

  before(async () => {
    dns = await startDnsServer({
      zones: ['sender.example', 'outside.example'],
      records: [
        txt('s1._domainkey.sender.example', signer.record),
        txt('o1._domainkey.outside.example', outsider.record),
      ],
    });
    opendkim = await startOpendkimMilter({
      domain: 'sender.example',
      selector: 's1',
      keyPem: signer.pem,
      dns,
      authservId: 'mx.test',
    });
    d = await startDaemon(opendkim);
  });
  after(async () => {
    await d?.stop();
    await opendkim?.stop();
    await dns?.stop();
  });

  test('mail from an authenticated client is signed by opendkim, and dkimpy verifies the signature', async () => {
    const r = await sendMessage(d.submissionPort ?? 0, {
      from: 'alice@sender.example',
      to: ['bob@local.test'],
      auth: { user: 'alice', pass: 'secret' },
      message:
        'From: Alice <alice@sender.example>\r\nTo: bob@local.test\r\nSubject: signed by the milter\r\n' +
        'Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@sender.example>\r\n\r\nHello, Bob.\r\n',
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    const [m = ''] = await waitForMaildir(box('bob'));
    assert.match(m, /\nDKIM-Signature: v=1; a=rsa-sha256; [\s\S]*d=sender\.example; s=s1;/);
    // opendkim inserts at index 0: the very top, above our own Received: (as with Postfix).
    assert.match(
      m,
      /^Return-Path: [^\n]*\nDelivered-To: [^\n]*\nDKIM-Signature: [\s\S]*\nReceived: from client\.test /,
    );
    const verdicts = await dkimpyVerify(wire(m), dns);
    assert.deepEqual(verdicts, [{ result: 'pass', domain: 'sender.example', selector: 's1' }]);
  });

  test('mail from outside is verified: opendkim adds Authentication-Results with dkim=pass', async () => {
    const file = join(d.dir, 'outside.eml');
    writeFileSync(
      file,
      'From: Olga <olga@outside.example>\r\nTo: carol@local.test\r\nSubject: from outside\r\n' +
        'Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <o1@outside.example>\r\n\r\nSigned elsewhere.\r\n',
    );
    writeFileSync(join(d.dir, 'outsider.pem'), outsider.pem);
    const signed = (
      await dkimpySign(readFileSync(file), 'o1', 'outside.example', join(d.dir, 'outsider.pem'))
    ).toString('latin1');
    const r = await sendMessage(d.port, {
      from: 'olga@outside.example',
      to: ['carol@local.test'],
      message: signed,
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    const [m = ''] = await waitForMaildir(box('carol'));
    assert.match(m, /\nAuthentication-Results: mx\.test;[\s\S]*dkim=pass[\s\S]*header\.d=outside\.example/);
    assert.doesNotMatch(m, /d=sender\.example/, 'not signed: the client did not authenticate');
  });

  test('a message changed after signing is verified as dkim=fail', async () => {
    const signed = (
      await dkimpySign(
        'From: Olga <olga@outside.example>\r\nTo: dave@local.test\r\nSubject: original\r\n\r\nSigned elsewhere.\r\n',
        'o1',
        'outside.example',
        join(d.dir, 'outsider.pem'),
      )
    ).toString('latin1');
    const tampered = signed.replace('Signed elsewhere.', 'Changed on the way.');
    const r = await sendMessage(d.port, {
      from: 'olga@outside.example',
      to: ['dave@local.test'],
      message: tampered,
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    const [m = ''] = await waitForMaildir(box('dave'));
    assert.match(m, /\nAuthentication-Results: mx\.test;[\s\S]*dkim=fail/);
  });
});

describe('milter: opendkim on a unix socket', { skip: missing }, () => {
  const signer = rsaKey();
  let dns: TestDnsServer;
  let opendkim: OpendkimMilter;
  let d: TestDaemon;
  before(async () => {
    dns = await startDnsServer({
      zones: ['sender.example'],
      records: [txt('s1._domainkey.sender.example', signer.record)],
    });
    opendkim = await startOpendkimMilter({
      domain: 'sender.example',
      selector: 's1',
      keyPem: signer.pem,
      dns,
      authservId: 'mx.test',
      unix: true,
    });
    d = await startDaemon(opendkim);
  });
  after(async () => {
    await d?.stop();
    await opendkim?.stop();
    await dns?.stop();
  });

  test('over unix:/path, mail from an authenticated client is signed by opendkim and dkimpy verifies it', async () => {
    assert.match(opendkim.address, /^unix:\//);
    const r = await sendMessage(d.submissionPort ?? 0, {
      from: 'alice@sender.example',
      to: ['bob@local.test'],
      auth: { user: 'alice', pass: 'secret' },
      message:
        'From: Alice <alice@sender.example>\r\nTo: bob@local.test\r\nSubject: over a unix socket\r\n' +
        'Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <u1@sender.example>\r\n\r\nHello, Bob.\r\n',
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    const [m = ''] = await waitForMaildir(join(d.dataDir, 'mail', 'bob'));
    assert.match(m, /\nDKIM-Signature: v=1; a=rsa-sha256; [\s\S]*d=sender\.example; s=s1;/);
    assert.deepEqual(await dkimpyVerify(wire(m), dns), [
      { result: 'pass', domain: 'sender.example', selector: 's1' },
    ]);
  });
});
