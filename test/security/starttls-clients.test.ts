// STARTTLS as real clients drive it, against a `logmta serve` child process: `openssl s_client
// -starttls smtp` (its EHLO was before the handshake, so a MAIL right after it is 503 until the
// client says EHLO again, RFC 3207 4.2), and Python's ssl module sending a whole pipelined
// session under TLS in one write — two transactions, BDAT chunks and DATA, a refused recipient.
// The mail lands with a Received: header naming the TLS version and ESMTPS.
// Fails: naming the replies the client printed or the Received: header that lacks TLS.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { TLS_TOML, tlsFiles } from '../support/certs.js';
import { codeOf, maildirMessages, needTools, runTool, waitFor } from '../support/daemon.js';
import { type ServedSuite, serveSuite } from '../support/served.js';

const TOML = `
${TLS_TOML}
[[local]]
domain = "localhost"
users = ["ann", "ben"]
`;

let srv: ServedSuite;

const tagged = (user: string, tag: string): string[] =>
  maildirMessages(join(srv.dir, 'data', 'mail', user)).filter((m) => m.includes(tag));

/** The Received: field of a Maildir message (LF line ends, folded with tabs). */
const receivedOf = (m: string): string => /^Received: [^\n]*(?:\n\t[^\n]*)*/m.exec(m)?.[0] ?? '';

describe('STARTTLS with real clients (logmta serve)', () => {
  srv = serveSuite('logmta-starttls-', TOML, () => tlsFiles());

  test('openssl s_client: MAIL right after the handshake is 503, after a new EHLO the mail goes through', {
    skip: needTools('openssl'),
  }, async () => {
    const input =
      'MAIL FROM:<a@example.org>\nEHLO sclient.test\nMAIL FROM:<a@example.org>\nRCPT TO:<ann@localhost>\n' +
      'DATA\nSubject: s_client\n\nX-Tag: sclient-1\n.\nQUIT\n';
    const r = await runTool(
      'openssl',
      ['s_client', '-quiet', '-starttls', 'smtp', '-crlf', '-connect', `127.0.0.1:${srv.daemon.port}`],
      { input },
    );
    const replies = r.stdout
      .split(/\r?\n/)
      .filter((l) => /^\d{3} /.test(l))
      .map(codeOf);
    // s_client prints what follows the handshake: the 503, the new EHLO's last line, then the rest.
    assert.deepEqual(replies.slice(-7), [
      '503 5.5.1',
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    await waitFor(() => tagged('ann', 'sclient-1').length === 1, 'the message for ann');
    const rec = receivedOf(tagged('ann', 'sclient-1')[0] ?? '');
    assert.match(
      rec,
      /^Received: from sclient\.test \(\[127\.0\.0\.1\]\)\n\t\(using TLSv1\.[23] with cipher \S+\)\n\tby mx\.test \(logmta\) with ESMTPS id /,
    );
  });

  test('Python ssl: a whole pipelined session under TLS in one write, BDAT and DATA, replies in order', {
    skip: needTools('python3'),
  }, async () => {
    const chunk1 = 'Subject: py-tls-1\r\n\r\n';
    const chunk2 = 'X-Tag: pytls-1\r\n';
    const session =
      'EHLO pytls.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<ann@localhost>\r\nRCPT TO:<nobody@localhost>\r\n' +
      `BDAT ${chunk1.length}\r\n${chunk1}BDAT ${chunk2.length} LAST\r\n${chunk2}` +
      'MAIL FROM:<b@example.org>\r\nRCPT TO:<ben@localhost>\r\nDATA\r\nSubject: py-tls-2\r\n\r\nX-Tag: pytls-2\r\n.\r\nQUIT\r\n';
    const script = `
import json, socket, ssl, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
f = s.makefile('rb')
def replies(f, n):
    out = []
    while len(out) < n:
        line = f.readline().decode()
        if line == '': break
        if line[3:4] != '-': out.append(line.rstrip('\\r\\n'))
    return out
pre = replies(f, 1)
s.sendall(b'EHLO pytls.test\\r\\nSTARTTLS\\r\\n')
pre += replies(f, 2)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname='localhost')
t.sendall(sys.stdin.buffer.read())
g = t.makefile('rb')
print(json.dumps({'pre': pre, 'tls': t.version(), 'replies': replies(g, 100)}))
`;
    const r = await runTool('python3', ['-c', script, String(srv.daemon.port)], { input: session });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { pre: string[]; tls: string; replies: string[] };
    assert.deepEqual(out.pre.map(codeOf), ['220', '250', '220 2.0.0']);
    assert.match(out.tls, /^TLSv1\.[23]$/);
    assert.deepEqual(out.replies.map(codeOf), [
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '550 5.1.1',
      '250 2.0.0',
      '250 2.0.0',
      '250 2.1.0',
      '250 2.1.5',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    await waitFor(
      () => tagged('ann', 'pytls-1').length === 1 && tagged('ben', 'pytls-2').length === 1,
      'both messages',
    );
    for (const m of [...tagged('ann', 'pytls-1'), ...tagged('ben', 'pytls-2')]) {
      assert.match(
        receivedOf(m),
        /\(using TLSv1\.[23] with cipher [^)]+\)\n\tby mx\.test \(logmta\) with ESMTPS id /,
      );
    }
    // The chunks arrive as one message, in order.
    assert.match(tagged('ann', 'pytls-1')[0] ?? '', /\nSubject: py-tls-1\n\nX-Tag: pytls-1\n$/);
  });
});
