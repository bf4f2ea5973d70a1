// Pipelining as real clients do it, against a `logmta serve` child process: a whole group (MAIL,
// several RCPTs with some refused, DATA, the message) in one write, the next transaction or QUIT
// behind the final dot, a client that half-closes its side after its last command and reads the
// replies to the end (`printf ... | nc -N`, Python's shutdown(SHUT_WR)), commands split at every
// byte boundary, swaks --pipeline with refused recipients and Postfix's smtp-source (sessions that
// reuse their connection, several recipients). What is checked is what the client
// and the recipients end up with: the replies in order and in number, the message in the
// accepted recipients' Maildirs exactly once, nothing for the refused ones.
// Fails: naming the replies received or the Maildir that holds the wrong messages.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  codeOf,
  maildirMessages,
  needTools,
  runTool,
  type SmtpChat,
  waitFor,
  waitForMaildir,
} from '../support/daemon.js';
import { type ServedSuite, serveSuite } from '../support/served.js';

/**
 * Python writes `data` with one sendall() after the greeting, reads until the server closes, and
 * prints the reply lines it got (final lines of multi-line replies only), as JSON.
 */
async function pythonBurst(data: string): Promise<string[]> {
  const script = `
import json, socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
f.readline()
s.sendall(sys.stdin.buffer.read())
out = []
for line in f:
    line = line.decode('utf-8', 'replace').rstrip('\\r\\n')
    if line[3:4] != '-': out.append(line)
print(json.dumps(out))
`;
  const r = await runTool('python3', ['-c', script, String(srv.daemon.port)], { input: data });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as string[];
}

const TOML = `
[smtp]
max_recipients = 100
[[local]]
domain = "localhost"
users = ["ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal"]
[[local]]
domain = "any.test"
`;

let srv: ServedSuite;

const box = (u: string): string => `${srv.dir}/data/mail/${u}`;
const codes = (rs: string[]): string[] => rs.map(codeOf);

const chat = (): Promise<SmtpChat> => srv.chat();

/** Every reply the server sends until it closes the connection. */
async function readToClose(c: SmtpChat): Promise<string[]> {
  await c.waitClosed();
  return c.read(1_000, 1);
}

/** The messages holding `tag` in a user's Maildir. */
const withTag = (user: string, tag: string): string[] =>
  maildirMessages(box(user)).filter((m) => m.includes(tag));

describe('pipelining as real clients do it (logmta serve)', () => {
  srv = serveSuite('logmta-pipe-', TOML);

  test('a half-closing client gets every reply of its pipelined transaction, and the message once', async () => {
    const c = await chat();
    c.send(
      'EHLO half.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<ann@localhost>\r\nRCPT TO:<zed@localhost>\r\n' +
        'DATA\r\nSubject: half-close\r\n\r\nX-Tag: half-1\r\n.\r\nQUIT\r\n',
    );
    c.socket.end();
    const r = await readToClose(c);
    assert.deepEqual(codes(r), [
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '550 5.1.1',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    const [m] = await waitForMaildir(box('ann'));
    assert.ok(m?.includes('half-1'));
  });

  test('Python writes MAIL, RCPTs (two refused), DATA and the message at once: replies in order, only the accepted get it', {
    skip: needTools('python3'),
  }, async () => {
    const r = await pythonBurst(
      'EHLO burst.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<cat@localhost>\r\nRCPT TO:<nobody@localhost>\r\n' +
        'RCPT TO:<dan@localhost>\r\nRCPT TO:<x@elsewhere.test>\r\nDATA\r\nSubject: burst\r\n\r\nX-Tag: burst-1\r\n.\r\n' +
        'QUIT\r\n',
    );
    assert.deepEqual(codes(r), [
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '550 5.1.1',
      '250 2.1.5',
      '554 5.7.1',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    await waitFor(
      () => withTag('cat', 'burst-1').length === 1 && withTag('dan', 'burst-1').length === 1,
      'cat and dan',
    );
    assert.deepEqual(maildirMessages(box('nobody')), []);
  });

  test('DATA after every RCPT was refused gets 554 and stores nothing; the session goes on in the same write', {
    skip: needTools('python3'),
  }, async () => {
    const r = await pythonBurst(
      'EHLO none.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@localhost>\r\nRCPT TO:<x@elsewhere.test>\r\nDATA\r\n' +
        'RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<eve@localhost>\r\nDATA\r\nSubject: after\r\n\r\nX-Tag: none-2\r\n.\r\nQUIT\r\n',
    );
    assert.deepEqual(codes(r), [
      '250',
      '250 2.1.0',
      '550 5.1.1',
      '554 5.7.1',
      '554 5.5.1',
      '250 2.0.0',
      '250 2.1.0',
      '250 2.1.5',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    const [m] = await waitForMaildir(box('eve'));
    assert.ok(m?.includes('none-2'));
    assert.equal(maildirMessages(box('eve')).length, 1, 'only the second transaction was stored');
  });

  test('BDAT LAST, a whole second transaction and QUIT in one write: both messages land, replies in order', async () => {
    const c = await chat();
    const first = 'Subject: chunk-1\r\n\r\nX-Tag: bdat-1\r\n';
    const second = 'Subject: chunk-2\r\n\r\nX-Tag: bdat-2\r\n';
    c.send(
      `EHLO bdat.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<fay@localhost>\r\nBDAT ${first.length} LAST\r\n${first}` +
        `MAIL FROM:<b@example.org>\r\nRCPT TO:<fay@localhost>\r\nBDAT 5\r\nSubjeBDAT ${second.length - 5} LAST\r\n${second.slice(5)}QUIT\r\n`,
    );
    const r = await c.read(9);
    assert.deepEqual(codes(r), [
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '250 2.0.0',
      '250 2.1.0',
      '250 2.1.5',
      '250 2.0.0',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    await waitFor(
      () => withTag('fay', 'bdat-1').length === 1 && withTag('fay', 'bdat-2').length === 1,
      'both',
    );
  });

  test('a transaction sent one byte per write (CRLF and the final dot split everywhere) is received intact', async () => {
    const c = await chat();
    c.socket.setNoDelay(true);
    const text =
      'EHLO bytes.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<gus@localhost>\r\nDATA\r\n' +
      'Subject: bytes\r\n\r\nX-Tag: bytes-1\r\n..dot\r\n.\r\nQUIT\r\n';
    for (const ch of text) await new Promise<void>((res) => c.socket.write(ch, () => res()));
    const r = await readToClose(c);
    assert.deepEqual(codes(r), ['250', '250 2.1.0', '250 2.1.5', '354', '250 2.0.0', '221 2.0.0']);
    const [m] = await waitForMaildir(box('gus'));
    assert.match(m ?? '', /X-Tag: bytes-1\n\.dot\n$/);
  });

  test('swaks --pipeline with every recipient refused: DATA gets 554 and nothing is stored', {
    skip: needTools('swaks'),
  }, async () => {
    const r = await runTool('swaks', [
      '--server',
      `127.0.0.1:${srv.daemon.port}`,
      '--pipeline',
      '--helo',
      'swaks-none.test',
      '--from',
      'a@example.org',
      '--to',
      'nobody@localhost,x@elsewhere.test',
      '--header',
      'X-Tag: swaks-none',
    ]);
    assert.notEqual(r.code, 0, 'swaks reports the failure');
    assert.match(r.stdout, /<\*\* +550 5\.1\.1 <nobody@localhost>/);
    assert.match(r.stdout, /<\*\* +554 5\.7\.1 <x@elsewhere\.test>/);
    assert.match(r.stdout, /<\*\* +554 5\.5\.1 No valid recipients/);
    assert.doesNotMatch(r.stdout, /X-Tag: swaks-none/, 'the message was never sent');
    assert.doesNotMatch(srv.daemon.stdout(), /"msg":"received"[^\n]*"helo":"swaks-none\.test"/);
  });

  test('smtp-source: 4 sessions reusing their connections, 3 recipients a message: each copy lands once', {
    skip: needTools('/usr/sbin/smtp-source'),
  }, async () => {
    const send = (args: string[]) =>
      runTool('/usr/sbin/smtp-source', [
        ...args,
        '-f',
        'a@example.org',
        '-t',
        'src@any.test',
        '-S',
        'smtp-source run',
        `127.0.0.1:${srv.daemon.port}`,
      ]);
    // -d: the next message over the same connection; without it, one connection per message.
    const reuse = await send(['-d', '-s', '4', '-m', '40', '-r', '3']);
    assert.equal(reuse.code, 0, reuse.stderr);
    const fresh = await send(['-s', '4', '-m', '20', '-r', '3']);
    assert.equal(fresh.code, 0, fresh.stderr);
    // smtp-source's recipients: src@, 2src@, 3src@.
    const users = ['src', '2src', '3src'];
    const count = (u: string) =>
      maildirMessages(`${srv.dir}/data/mail/${u}`).filter((m) => m.includes('Subject: smtp-source run'))
        .length;
    await waitFor(() => users.every((u) => count(u) >= 60), '60 messages in each of the three mailboxes');
    await waitFor(
      () =>
        (srv.daemon.stdout().match(/"rcpt":"\d?src@any\.test"[^\n]*"msg":"delivered"/g) ?? []).length >= 180,
      'every outcome logged',
    );
    assert.deepEqual(users.map(count), [60, 60, 60]);
  });
});
