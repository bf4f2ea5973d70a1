// Receiving with Python's smtplib against a whole in-process daemon: sendmail with several
// recipients (one refused at RCPT), BDAT/CHUNKING through low-level commands, a pipelined burst
// of two whole transactions in one write, and STARTTLS with AUTH. Each script prints JSON that
// the test checks, together with the Maildirs. Skipped only when python3 is missing.

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
  waitForMaildir,
} from '../support/daemon.js';

const skip = hasTool('python3') ? false : 'python3 is not installed';

let d: TestDaemon;

/** Runs a Python script with the daemon's ports as argv[1], argv[2]; returns its JSON output. */
async function py(script: string): Promise<unknown> {
  const r = await runTool('python3', ['-c', script, String(d.port), String(d.submissionPort), d.dir]);
  assert.equal(r.code, 0, `python failed:\n${r.stderr}${r.stdout}`);
  return JSON.parse(r.stdout);
}

const mailbox = (user: string) => `${d.dataDir}/mail/${user}`;

const PRELUDE = `
import json, smtplib, socket, ssl, sys
port = int(sys.argv[1]); sub = int(sys.argv[2]); tmp = sys.argv[3]
def reply(s):
    code, msg = s.getreply()
    return [code, msg.decode()]
`;

describe('receiving with Python smtplib', { skip }, () => {
  before(async () => {
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
password = "s3cret"
[[local]]
domain = "localhost"
users = ["ann", "ben", "cat", "dan", "eve", "fay", "gus"]
`,
    });
  });
  after(async () => {
    await d?.stop();
  });

  test('sendmail to several recipients: the unknown one is refused with 550 5.1.1, the others get the message', async () => {
    const out = (await py(`${PRELUDE}
s = smtplib.SMTP('127.0.0.1', port)
msg = b"From: py@example.org\\r\\nTo: ann@localhost\\r\\nSubject: py-multi\\r\\n\\r\\nline 1\\r\\n.leading dot\\r\\n"
refused = s.sendmail('py@example.org', ['ann@localhost', 'zed@localhost', 'ben@localhost'], msg)
s.quit()
print(json.dumps({k: [v[0], v[1].decode()] for k, v in refused.items()}))
`)) as Record<string, [number, string]>;
    assert.deepEqual(Object.keys(out), ['zed@localhost']);
    assert.equal(out['zed@localhost']?.[0], 550);
    assert.match(out['zed@localhost']?.[1] ?? '', /^5\.1\.1 /);
    for (const u of ['ann', 'ben']) {
      const [m] = await waitForMaildir(mailbox(u));
      assert.match(
        m ?? '',
        new RegExp(`^Return-Path: <py@example\\.org>\\nDelivered-To: ${u}@localhost\\nReceived: `),
      );
      // Dot-stuffing by the client and unstuffing by us round-trip.
      assert.match(m ?? '', /\n\nline 1\n\.leading dot\n$/);
    }
  });

  test('BDAT: three chunks, the last with LAST, make one message; each chunk is acknowledged', async () => {
    const out = (await py(`${PRELUDE}
s = smtplib.SMTP('127.0.0.1', port)
s.ehlo('py.test')
assert s.has_extn('chunking')
r = {'mail': list(s.mail('py@example.org')), 'rcpt': list(s.rcpt('cat@localhost'))}
chunks = [b"Subject: py-bdat\\r\\n\\r\\n", b"part one\\r\\n.not stuffed\\r\\n", b"part two\\r\\n"]
replies = []
for i, c in enumerate(chunks):
    last = ' LAST' if i == len(chunks) - 1 else ''
    s.send(('BDAT %d%s\\r\\n' % (len(c), last)).encode() + c)
    replies.append(reply(s))
s.quit()
print(json.dumps(replies))
`)) as [number, string][];
    assert.deepEqual(
      out.map((r) => r[0]),
      [250, 250, 250],
    );
    assert.match(out[0]?.[1] ?? '', /^2\.0\.0 20 octets received$/);
    assert.match(out[2]?.[1] ?? '', /^2\.0\.0 Ok: queued as [0-9A-F]+$/);
    const [m] = await waitForMaildir(mailbox('cat'));
    // BDAT content is not dot-stuffed: ".not stuffed" stays as sent.
    assert.match(m ?? '', /Subject: py-bdat\n\npart one\n\.not stuffed\npart two\n$/);
  });

  test('BDAT 0 LAST ends a chunked message; BDAT after a refused RCPT-less MAIL is 554', async () => {
    const out = (await py(`${PRELUDE}
s = smtplib.SMTP('127.0.0.1', port)
s.ehlo('py.test')
res = {}
s.mail('py@example.org')
s.send(b'BDAT 7\\r\\nX: y\\r\\n\\r\\n')
res['nonrcpt'] = reply(s)
s.rset()
s.mail('py@example.org'); s.rcpt('dan@localhost')
s.send(b'BDAT 17\\r\\nSubject: zero\\r\\n\\r\\n')
res['chunk'] = reply(s)
s.send(b'BDAT 0 LAST\\r\\n')
res['last'] = reply(s)
s.quit()
print(json.dumps(res))
`)) as Record<string, [number, string]>;
    assert.deepEqual(out.nonrcpt?.slice(0, 1), [554]);
    assert.equal(out.chunk?.[0], 250);
    assert.equal(out.last?.[0], 250);
    const [m] = await waitForMaildir(mailbox('dan'));
    assert.match(m ?? '', /Subject: zero\n\n$/);
  });

  test('two whole transactions pipelined in one write get their replies in order and both land', async () => {
    const out = (await py(`${PRELUDE}
sock = socket.create_connection(('127.0.0.1', port))
f = sock.makefile('rb')
def read_reply():
    lines = []
    while True:
        l = f.readline().decode().rstrip('\\r\\n')
        lines.append(l)
        if len(l) < 4 or l[3] == ' ':
            return lines
read_reply()
sock.sendall(b'EHLO py.test\\r\\n')
ehlo = read_reply()
burst = b''
for u in ['eve', 'fay']:
    burst += b'MAIL FROM:<py@example.org>\\r\\nRCPT TO:<' + u.encode() + b'@localhost>\\r\\nDATA\\r\\n'
    burst += b'Subject: burst ' + u.encode() + b'\\r\\n\\r\\nbody\\r\\n.\\r\\n'
burst += b'QUIT\\r\\n'
sock.sendall(burst)
codes = []
while True:
    r = read_reply()
    if r == ['']: break
    codes.append(' '.join(r[-1].split()[:2]))
    if r[-1].startswith('221'): break
print(json.dumps({'ehlo': 'PIPELINING' in ' '.join(ehlo), 'codes': codes}))
`)) as { ehlo: boolean; codes: string[] };
    assert.equal(out.ehlo, true);
    assert.deepEqual(out.codes, [
      '250 2.1.0',
      '250 2.1.5',
      '354 End',
      '250 2.0.0',
      '250 2.1.0',
      '250 2.1.5',
      '354 End',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    const [e] = await waitForMaildir(mailbox('eve'));
    const [f] = await waitForMaildir(mailbox('fay'));
    assert.match(e ?? '', /Subject: burst eve\n/);
    assert.match(f ?? '', /Subject: burst fay\n/);
  });

  test('STARTTLS then AUTH PLAIN with smtplib on the submission port', async () => {
    const out = (await py(`${PRELUDE}
ctx = ssl.create_default_context(cafile=tmp + '/cert.pem')
s = smtplib.SMTP('localhost', sub)
s.ehlo('py.test')
before = sorted(s.esmtp_features.keys())
s.starttls(context=ctx)
s.ehlo('py.test')
after = sorted(s.esmtp_features.keys())
auth = list(s.login('alice', 's3cret'))
auth[1] = auth[1].decode()
s.sendmail('alice@localhost', ['gus@localhost'], b'Subject: py-tls\\r\\n\\r\\nsecret stuff\\r\\n')
version = s.sock.version()
s.quit()
print(json.dumps({'before': before, 'after': after, 'auth': auth, 'version': version}))
`)) as { before: string[]; after: string[]; auth: [number, string]; version: string };
    assert.ok(out.before.includes('starttls'));
    assert.ok(!out.after.includes('starttls'), 'STARTTLS is not offered again inside TLS');
    assert.deepEqual(out.auth, [235, '2.7.0 Authentication successful']);
    const [m] = await waitForMaildir(mailbox('gus'));
    assert.match(
      m ?? '',
      new RegExp(
        `\\(using ${out.version.replace('.', '\\.')} with cipher \\S+\\)\\n\\t\\(authenticated sender: alice\\)\\n\\tby mx\\.test \\(logmta\\) with ESMTPSA id `,
      ),
    );
  });

  test('a failed transaction leaves no message behind', async () => {
    await py(`${PRELUDE}
s = smtplib.SMTP('127.0.0.1', port)
s.ehlo('py.test')
s.mail('py@example.org'); s.rcpt('ann@localhost')
code, _ = s.docmd('DATA')
assert code == 354
s.send(b'Subject: nul\\r\\n\\r\\nbad\\x00byte\\r\\n.\\r\\n')
r = reply(s)
s.quit()
print(json.dumps(r))
`).then((r) => assert.deepEqual((r as [number, string])[0], 550));
    await new Promise((r) => setTimeout(r, 100));
    assert.ok(maildirMessages(mailbox('ann')).every((m) => !m.includes('Subject: nul')));
  });
});
