// Receiving with a real client: swaks (Debian package) against a whole in-process daemon on a
// loopback port — plain, STARTTLS, AUTH PLAIN/LOGIN/CRAM-MD5, PIPELINING, the submission port —
// checking what lands in the Maildir (Return-Path, Delivered-To, our Received: line) or at the
// relay sink. Skipped only when swaks is not installed.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { writeTestCertFiles } from '../support/certs.js';
import {
  hasTool,
  makeTempDir,
  maildirMessages,
  runTool,
  startTestDaemon,
  type TestDaemon,
  waitFor,
  waitForMaildir,
} from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';

const SWAKS = hasTool('swaks');
const skip = SWAKS ? false : 'swaks is not installed';

let d: TestDaemon;
let sink: SmtpSink;

function swaks(args: string[]) {
  return runTool('swaks', [
    '--server',
    `127.0.0.1:${d.port}`,
    '--from',
    'carol@example.org',
    '--helo',
    'client.test',
    ...args,
  ]);
}

const mailbox = (user: string) => `${d.dataDir}/mail/${user}`;
/** The header section of a Maildir message (Maildir files use LF line ends). */
const headers = (m: string) => m.slice(0, m.indexOf('\n\n') + 1);

describe('receiving with swaks', { skip }, () => {
  before(async () => {
    sink = await SmtpSink.start();
    const dir = makeTempDir();
    await writeTestCertFiles(dir);
    d = await startTestDaemon({
      dir,
      keepDir: false,
      toml: `
[smtp]
submission = ["127.0.0.1:0"]
[tls]
cert = "cert.pem"
key = "key.pem"
[[user]]
name = "alice"
password = "secret"
[[local]]
domain = "localhost"
users = ["alice", "bob", "dave", "erin", "frank", "gina", "hal", "ivy"]
[[route]]
domain = "*"
host = "127.0.0.1:${sink.port}"
`,
    });
  });
  after(async () => {
    await d?.stop();
    await sink?.close();
  });

  test('plain ESMTP to alice@localhost lands in new/ with Return-Path, Delivered-To and Received:', async () => {
    const r = await swaks([
      '--to',
      'alice@localhost',
      '--header',
      'Subject: plain-1',
      '--body',
      'hello alice',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /<- {2}250 2\.0\.0 Ok: queued as [0-9A-F]+/);
    const queued = /queued as ([0-9A-F]+)/.exec(r.stdout)?.[1];
    const [m] = await waitForMaildir(mailbox('alice'));
    assert.ok(m);
    const h = headers(m);
    assert.match(
      h,
      /^Return-Path: <carol@example\.org>\nDelivered-To: alice@localhost\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\n/,
    );
    assert.match(
      h,
      new RegExp(`\\tby mx\\.test \\(logmta\\) with ESMTP id ${queued}\\n\\tfor <alice@localhost>; `),
    );
    assert.match(h, /Subject: plain-1\n/);
    assert.match(m, /\n\nhello alice\n/);
  });

  test('STARTTLS: the session is encrypted and Received: says ESMTPS with the TLS version', async () => {
    const r = await swaks(['--to', 'bob@localhost', '-tls', '--header', 'Subject: tls-1']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /=== TLS started with cipher TLSv1\.[23]/);
    // After the handshake swaks says EHLO again and the server must not offer STARTTLS twice.
    const afterTls = r.stdout.slice(r.stdout.indexOf('TLS started'));
    assert.doesNotMatch(afterTls, /250[- ]STARTTLS/);
    const [m] = await waitForMaildir(mailbox('bob'));
    assert.match(
      headers(m ?? ''),
      /\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\n\tby mx\.test \(logmta\) with ESMTPS id /,
    );
  });

  for (const mech of ['PLAIN', 'LOGIN', 'CRAM-MD5']) {
    test(`AUTH ${mech} on the submission port is accepted and recorded as ESMTPA`, async () => {
      const user = { PLAIN: 'dave', LOGIN: 'erin', 'CRAM-MD5': 'frank' }[mech] as string;
      const r = await runTool('swaks', [
        '--server',
        `127.0.0.1:${d.submissionPort}`,
        '--from',
        'alice@localhost',
        '--to',
        `${user}@localhost`,
        '--auth',
        mech,
        '--auth-user',
        'alice',
        '--auth-password',
        'secret',
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /<- {2}235 2\.7\.0 Authentication successful/);
      const [m] = await waitForMaildir(mailbox(user));
      assert.match(
        headers(m ?? ''),
        /\t\(authenticated sender: alice\)\n\tby mx\.test \(logmta\) with ESMTPA id /,
      );
    });
  }

  test('AUTH PLAIN inside TLS is ESMTPSA; an authenticated client may relay to a remote domain', async () => {
    const before = sink.transactions.length;
    const r = await runTool('swaks', [
      '--server',
      `127.0.0.1:${d.submissionPort}`,
      '--from',
      'alice@localhost',
      '--to',
      'someone@remote.example',
      '-tls',
      '--auth',
      'PLAIN',
      '--auth-user',
      'alice',
      '--auth-password',
      'secret',
      '--header',
      'Subject: relay-auth',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await sink.waitForTransactions(before + 1);
    const tx = sink.transactions[before];
    assert.ok(tx);
    assert.deepEqual(tx.recipients, ['someone@remote.example']);
    assert.equal(tx.sender, 'alice@localhost');
    const text = tx.data.toString('latin1');
    assert.match(text, /\(authenticated sender: alice\)\r\n\tby mx\.test \(logmta\) with ESMTPSA id /);
    assert.match(text, /Subject: relay-auth/);
  });

  test('a wrong password gets 535 5.7.8 and nothing is accepted', async () => {
    const r = await runTool('swaks', [
      '--server',
      `127.0.0.1:${d.submissionPort}`,
      '--from',
      'alice@localhost',
      '--to',
      'gina@localhost',
      '--auth',
      'PLAIN',
      '--auth-user',
      'alice',
      '--auth-password',
      'wrong',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /<~\* +535 5\.7\.8 |<\*\* +535 5\.7\.8 /);
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(maildirMessages(mailbox('gina')).length, 0);
  });

  test('the submission port refuses MAIL without AUTH: 530 5.7.0', async () => {
    const r = await runTool('swaks', [
      '--server',
      `127.0.0.1:${d.submissionPort}`,
      '--from',
      'alice@localhost',
      '--to',
      'gina@localhost',
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /<\*\* +530 5\.7\.0 Authentication required/);
  });

  test('PIPELINING: MAIL, several RCPTs and DATA go in one group, replies come back in order', async () => {
    const r = await swaks([
      '--pipeline',
      '--to',
      'hal@localhost,ivy@localhost,nobody@localhost,alice@localhost',
      '--header',
      'Subject: piped',
    ]);
    // One recipient is unknown: swaks still sends the message to the others.
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // The client wrote MAIL, the RCPTs and DATA before reading any reply.
    assert.match(
      r.stdout,
      / -> MAIL FROM:<carol@example\.org>\n -> RCPT TO:<hal@localhost>\n -> RCPT TO:<ivy@localhost>\n -> RCPT TO:<nobody@localhost>\n -> RCPT TO:<alice@localhost>\n -> DATA\n/,
    );
    assert.match(
      r.stdout,
      /<- {2}250 2\.1\.0 Ok\n<- {2}250 2\.1\.5 Ok\n<- {2}250 2\.1\.5 Ok\n<\*\* +550 5\.1\.1 <nobody@localhost>: user unknown\n<- {2}250 2\.1\.5 Ok\n<- {2}354 /,
    );
    const [h] = await waitForMaildir(mailbox('hal'));
    const [i] = await waitForMaildir(mailbox('ivy'));
    assert.match(h ?? '', /Delivered-To: hal@localhost\n/);
    assert.match(i ?? '', /Delivered-To: ivy@localhost\n/);
    // Several recipients: no "for <...>" clause in Received:.
    assert.doesNotMatch(headers(h ?? ''), /\tfor </);
    await waitFor(
      () => maildirMessages(mailbox('alice')).some((m) => m.includes('Subject: piped')),
      'the copy for alice',
    );
  });
});
