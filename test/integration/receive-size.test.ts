// The message size limit as Python's smtplib meets it, against a `logmta serve` child process
// with max_message_size = "64KiB": smtplib reads SIZE from EHLO and declares every message's
// size at MAIL, so a larger message is refused there (552, SMTPSenderRefused) before any data
// is sent; a message of exactly the limit — counted after dot-stuffing is undone, before our
// Received: header — is accepted, over DATA and over BDAT, and one octet more is not. A client
// that pipelines all its BDAT chunks (RFC 3030 allows it) and whose first chunk is over the limit
// gets one reply per chunk, the 552 for each up to LAST, and the connection goes on.
// Fails: naming the size that got the wrong reply.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { maildirMessages, needTools, runTool, waitFor } from '../support/daemon.js';
import { type ServedSuite, serveSuite } from '../support/served.js';

const LIMIT = 64 * 1024;
let srv: ServedSuite;

const box = (): string => join(srv.dir, 'data', 'mail', 'ann');

/** Runs a Python script with the daemon's port and LIMIT as argv; returns its JSON output. */
async function py(script: string): Promise<Record<string, unknown>> {
  const r = await runTool('python3', ['-c', script, String(srv.daemon.port), String(LIMIT)]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

describe('the size limit as smtplib meets it (logmta serve)', { skip: needTools('python3') }, () => {
  srv = serveSuite('logmta-size-', '[smtp]\nmax_message_size = "64KiB"\n[[local]]\ndomain = "localhost"\n');

  test('EHLO announces the limit; a larger message is refused at MAIL with 552 5.3.4', async () => {
    const out = await py(`
import json, smtplib, sys
port, limit = int(sys.argv[1]), int(sys.argv[2])
s = smtplib.SMTP('127.0.0.1', port)
s.ehlo('size.test')
size = s.esmtp_features.get('size')
msg = b'Subject: big\\r\\nX-Tag: size-big\\r\\n\\r\\n' + (b'x' * 1000 + b'\\r\\n') * 70
try:
    s.sendmail('a@example.org', ['ann@localhost'], msg)
    res = 'sent'
except smtplib.SMTPSenderRefused as e:
    res = [e.smtp_code, e.smtp_error.decode()]
s.quit()
print(json.dumps({'size': size, 'res': res}))
`);
    assert.equal(out.size, String(LIMIT));
    const [code, text] = out.res as [number, string];
    assert.equal(code, 552);
    assert.match(text, /^5\.3\.4 /);
  });

  test('exactly the limit (dot-stuffed on the wire) is accepted over DATA and BDAT; one octet more is refused', async () => {
    const out = await py(`
import json, smtplib, sys
port, limit = int(sys.argv[1]), int(sys.argv[2])
def message(n, tag):
    head = b'Subject: s\\r\\nX-Tag: ' + tag + b'\\r\\n\\r\\n'
    dots = b'.dot\\r\\n' * 100  # stuffed to ..dot on the wire: 100 octets more there
    rest = n - len(head) - len(dots)  # in lines of at most 1000 octets with CRLF
    return head + dots + (b'y' * 998 + b'\\r\\n') * (rest // 1000) + b'z' * (rest % 1000 - 2) + b'\\r\\n'
out = {}
for n, tag in ((limit, b'size-data-ok'), (limit + 1, b'size-data-over')):
    s = smtplib.SMTP('127.0.0.1', port)
    s.ehlo('size.test')
    m = message(n, tag)
    assert len(m) == n
    try:
        s.sendmail('a@example.org', ['ann@localhost'], m)
        out[tag.decode()] = 250
    except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as e:
        out[tag.decode()] = e.smtp_code
    s.quit()
for n, tag in ((limit, b'size-bdat-ok'), (limit + 1, b'size-bdat-over')):
    s = smtplib.SMTP('127.0.0.1', port)
    s.ehlo('size.test')
    m = message(n, tag)
    s.mail('a@example.org')
    s.rcpt('ann@localhost')
    half = n // 2
    s.send(b'BDAT %d\\r\\n' % half + m[:half])
    s.getreply()
    s.send(b'BDAT %d LAST\\r\\n' % (n - half) + m[half:])
    out[tag.decode()] = s.getreply()[0]
    s.quit()
print(json.dumps(out))
`);
    assert.deepEqual(out, {
      'size-data-ok': 250,
      'size-data-over': 552,
      'size-bdat-ok': 250,
      'size-bdat-over': 552,
    });
    const tagged = (tag: string) => maildirMessages(box()).filter((m) => m.includes(`X-Tag: ${tag}\n`));
    await waitFor(() => tagged('size-data-ok').length === 1 && tagged('size-bdat-ok').length === 1, 'both');
    for (const t of ['size-big', 'size-data-over', 'size-bdat-over']) assert.deepEqual(tagged(t), [], t);
  });

  test('50 BDAT chunks pipelined behind one over the limit: 50 replies of 552, no 421, the next transaction delivered', async () => {
    const out = await py(`
import json, socket, sys
port, limit = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(('127.0.0.1', port))
f = s.makefile('rb')
def reply():
    while True:
        line = f.readline().decode()
        if not line: return 'closed'
        if line[3:4] != '-': return line.rstrip()
reply()
s.sendall(b'EHLO pipe.test\\r\\nMAIL FROM:<a@example.org>\\r\\nRCPT TO:<ann@localhost>\\r\\n')
head = [reply(), reply(), reply()]
# Every chunk in one write, as a client that pipelines BDAT does: the first over the limit.
big = (b'x' * 998 + b'\\r\\n') * (limit // 1000 + 1)
burst = b'BDAT %d\\r\\n' % len(big) + big
for i in range(49):
    burst += (b'BDAT 1000 LAST\\r\\n' if i == 48 else b'BDAT 1000\\r\\n') + b'y' * 998 + b'\\r\\n'
s.sendall(burst)
chunks = [reply() for _ in range(50)]
# The connection is still good for the next transaction.
m = b'Subject: s\\r\\nX-Tag: size-after-chunks\\r\\n\\r\\nhi\\r\\n'
s.sendall(b'MAIL FROM:<a@example.org>\\r\\nRCPT TO:<ann@localhost>\\r\\nBDAT %d LAST\\r\\n' % len(m) + m + b'QUIT\\r\\n')
tail = [reply() for _ in range(4)]
print(json.dumps({'head': head, 'chunks': chunks, 'tail': tail}))
`);
    const code = (l: string) => l.slice(0, 9);
    assert.deepEqual((out.head as string[]).map(code), ['250 DSN', '250 2.1.0', '250 2.1.5']);
    assert.deepEqual(
      (out.chunks as string[]).map(code),
      Array(50).fill('552 5.3.4'),
      JSON.stringify(out.chunks),
    );
    assert.deepEqual((out.tail as string[]).map(code), ['250 2.1.0', '250 2.1.5', '250 2.0.0', '221 2.0.0']);
    await waitFor(
      () => maildirMessages(box()).filter((m) => m.includes('X-Tag: size-after-chunks\n')).length === 1,
      'the next message delivered',
    );
  });
});
