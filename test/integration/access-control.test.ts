// The access controls a postmaster reaches for first, against a real `logmta serve`, with clients
// from different loopback source addresses (Linux answers all of 127.0.0.0/8): [[access]] rules
// refuse a client, a sender or a recipient (postmaster still reachable; an authenticated user not
// refused by a client rule), the per-client rates of [smtp] refuse the connection, MAIL or RCPT
// over their window while another address goes on, and recover after it; a [[user]] with
// `addresses` may send only as those; SIGHUP changes the rules for new sessions, and `logmta
// check` refuses a broken rule. swaks (STARTTLS + AUTH) and Python's smtplib are the clients;
// what is asserted is what lands in the Maildirs, exactly once.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeTestCertFiles } from '../support/certs.js';
import {
  hasTool,
  makeTempDir,
  maildirMessages,
  runLogmta,
  runTool,
  type SpawnedDaemon,
  spawnDaemon,
  waitFor,
} from '../support/daemon.js';

const skip = !hasTool('swaks')
  ? 'swaks is not installed'
  : !hasTool('python3')
    ? 'python3 is not installed'
    : false;

const RULES = `
[[access]]
client = ["127.0.0.2"]
action = "reject"
text = "Blocked by the postmaster"

[[access]]
sender = ["spammer.example"]
action = "reject"

[[access]]
recipient = ["info@example.test"]
action = "defer"
`;

const TOML = `
[smtp]
submission = ["127.0.0.1:0"]
client_connection_rate = "3/2s"
client_message_rate = "3/2s"
client_recipient_rate = "4/2s"
# Only 127.0.0.1 is spared (the default spares all of loopback, which these clients are).
client_rate_exceptions = ["127.0.0.1"]

[tls]
cert = "cert.pem"
key = "key.pem"

[[user]]
name = "ann"
password = "ann-pw"
addresses = ["ann@example.test", "@ann.example"]

[[user]]
name = "ben"
password = "ben-pw"

[[local]]
domain = "example.test"
${RULES}`;

/** One smtplib session: connect from `src`, optionally STARTTLS + AUTH, send each message; JSON out. */
const SMTPLIB = `
import json, smtplib, ssl, sys
a = json.loads(sys.argv[1])
def run():
    try:
        s = smtplib.SMTP('127.0.0.1', a['port'], source_address=(a['src'], 0), timeout=10)
    except smtplib.SMTPConnectError as e:
        return {'connect': e.smtp_code, 'text': e.smtp_error.decode()}
    res = {'connect': 220, 'messages': []}
    s.ehlo('client.test')
    for m in a.get('messages', []):
        msg = 'Subject: %s\\r\\n\\r\\nbody\\r\\n' % m['subject']
        try:
            refused = s.sendmail(m['from'], m['to'], msg)
            res['messages'].append({'ok': True, 'refused': {k: '%d %s' % (v[0], v[1].decode()) for k, v in refused.items()}})
        except smtplib.SMTPSenderRefused as e:
            res['messages'].append({'ok': False, 'mail': '%d %s' % (e.smtp_code, e.smtp_error.decode())})
        except smtplib.SMTPRecipientsRefused as e:
            res['messages'].append({'ok': False, 'refused': {k: '%d %s' % (v[0], v[1].decode()) for k, v in e.recipients.items()}})
    s.quit()
    return res
print(json.dumps(run()))
`;

interface SmtplibResult {
  connect: number;
  text?: string;
  messages?: { ok: boolean; mail?: string; refused?: Record<string, string> }[];
}

describe('access rules, client rates and sender login restriction in logmta serve', { skip }, () => {
  const dir = makeTempDir('logmta-access-');
  let d: SpawnedDaemon;

  before(async () => {
    await writeTestCertFiles(dir);
    writeFileSync(join(dir, 'send_with_smtplib.py'), SMTPLIB);
    d = await spawnDaemon({ dir, toml: TOML });
  });
  after(async () => {
    await d?.stop();
  });

  /** The ports of the daemon's latest start (a reload prints its addresses again). */
  const ports = () => {
    const line = [...d.stderr().matchAll(/logmta: SMTP on [^\n]*/g)].at(-1)?.[0] ?? '';
    return {
      smtp: Number(/SMTP on 127\.0\.0\.1:(\d+)/.exec(line)?.[1]),
      submission: Number(/submission on 127\.0\.0\.1:(\d+)/.exec(line)?.[1]),
    };
  };
  const mailbox = (user: string) => maildirMessages(join(d.dataDir, 'mail', user));
  const subjects = (user: string) => mailbox(user).map((m) => /^Subject: (.*)$/m.exec(m)?.[1]);
  /** Log lines (JSON on stdout) with this message. */
  const logged = (msg: string) =>
    d
      .stdout()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === msg);

  function swaks(src: string, from: string, to: string, subject: string, extra: string[] = []) {
    return runTool('swaks', [
      '--server',
      `127.0.0.1:${extra.includes('--tls') ? ports().submission : ports().smtp}`,
      '--local-interface',
      src,
      '--helo',
      'client.test',
      '--from',
      from,
      '--to',
      to,
      '--header',
      `Subject: ${subject}`,
      ...extra,
    ]);
  }
  const auth = (user: string, pass: string) => [
    '--tls',
    '--auth',
    'PLAIN',
    '--auth-user',
    user,
    '--auth-password',
    pass,
  ];

  async function smtplib(args: Record<string, unknown>): Promise<SmtplibResult> {
    const r = await runTool('python3', [
      join(dir, 'send_with_smtplib.py'),
      JSON.stringify({ port: ports().smtp, ...args }),
    ]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as SmtplibResult;
  }

  test('a refused client gets 554 5.7.1 with the text and nothing is queued; postmaster and AUTH still get through', async () => {
    const refused = await swaks('127.0.0.2', 'carol@client.example', 'bob@example.test', 'refused');
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stdout,
      /<~?\*\*? +554 5\.7\.1 Client host \[127\.0\.0\.2\] rejected: Blocked by the postmaster/,
    );
    // RFC 5321 4.5.1: mail to postmaster is still taken from that client.
    const pm = await swaks('127.0.0.2', 'carol@client.example', 'postmaster@example.test', 'to postmaster');
    assert.equal(pm.code, 0, pm.stdout);
    // After AUTH (STARTTLS on the submission port) the client rule does not apply.
    const ben = await swaks(
      '127.0.0.2',
      'ben@example.test',
      'bob@example.test',
      'ben from a blocked host',
      auth('ben', 'ben-pw'),
    );
    assert.equal(ben.code, 0, ben.stdout);
    // Another address is not refused.
    const other = await swaks('127.0.0.3', 'carol@client.example', 'bob@example.test', 'other client');
    assert.equal(other.code, 0, other.stdout);
    await waitFor(
      () => mailbox('bob').length === 2 && mailbox('postmaster').length === 1,
      'the permitted mail delivered',
    );
    assert.deepEqual(subjects('bob').sort(), ['ben from a blocked host', 'other client']);
    assert.deepEqual(subjects('postmaster'), ['to postmaster']);
    await waitFor(() => logged('access rule refused a recipient').length === 1, 'the refusal logged');
    assert.equal(logged('access rule refused a recipient')[0]!.rule, 'access[1]');
  });

  test('a sender rule refuses the domain and its subdomains; a recipient rule defers with 450 4.7.1', async () => {
    const spam = await swaks('127.0.0.3', 'x@mail.spammer.example', 'bob@example.test', 'spam');
    assert.match(
      spam.stdout,
      /<~?\*\*? +554 5\.7\.1 <x@mail\.spammer\.example>: Sender address rejected: Access denied/,
    );
    const info = await swaks('127.0.0.11', 'carol@client.example', 'info@example.test', 'to info');
    assert.match(
      info.stdout,
      /<~?\*\*? +450 4\.7\.1 <info@example\.test>: Recipient address rejected: Access denied/,
    );
    // A positive control from the same client, then: nothing of the refused mail was queued.
    const ok = await swaks('127.0.0.4', 'carol@client.example', 'dan@example.test', 'control');
    assert.equal(ok.code, 0, ok.stdout);
    await waitFor(() => mailbox('dan').length === 1, 'the control delivered');
    assert.deepEqual(mailbox('info'), []);
    assert.equal(subjects('bob').includes('spam'), false);
  });

  test('a user with addresses may send only as those (553 5.7.1 otherwise); the null sender and other users are free', async () => {
    const spoof = await swaks(
      '127.0.0.1',
      'ben@example.test',
      'bob@example.test',
      'ann as ben',
      auth('ann', 'ann-pw'),
    );
    assert.match(
      spoof.stdout,
      /<~?\*\*? +553 5\.7\.1 <ben@example\.test>: Sender address rejected: not owned by user ann/,
    );
    for (const [from, subject] of [
      ['ann@example.test', 'ann as herself'],
      ['Ann@EXAMPLE.test', 'ann in capitals'],
      ['news@ann.example', 'ann from her domain'],
      ['<>', 'ann with the null sender'],
    ] as const) {
      const r = await swaks('127.0.0.1', from, 'eve@example.test', subject, auth('ann', 'ann-pw'));
      assert.equal(r.code, 0, `${from}: ${r.stdout}`);
    }
    const sub = await swaks(
      '127.0.0.1',
      'x@sub.ann.example',
      'eve@example.test',
      'subdomain',
      auth('ann', 'ann-pw'),
    );
    assert.match(sub.stdout, /<~?\*\*? +553 5\.7\.1 /, '@ann.example is that domain alone');
    const ben = await swaks(
      '127.0.0.1',
      'anyone@else.example',
      'eve@example.test',
      'ben as anyone',
      auth('ben', 'ben-pw'),
    );
    assert.equal(ben.code, 0, 'a user without addresses keeps any MAIL FROM');
    await waitFor(() => mailbox('eve').length === 5, 'the allowed mail delivered');
    assert.deepEqual(subjects('eve').sort(), [
      'ann as herself',
      'ann from her domain',
      'ann in capitals',
      'ann with the null sender',
      'ben as anyone',
    ]);
    assert.equal(subjects('bob').includes('ann as ben'), false);
  });

  test('rates: MAIL over the message rate gets 450 4.7.1, RCPT over the recipient rate too; another address goes on; both recover', async () => {
    const msgs = (n: number, subject: string) =>
      Array.from({ length: n }, (_, i) => ({
        from: 'f@client.example',
        to: ['fay@example.test'],
        subject: `${subject} ${i + 1}`,
      }));
    const first = await smtplib({ src: '127.0.0.5', messages: msgs(4, 'burst') });
    const windowOpened = Date.now();
    assert.deepEqual(
      first.messages!.map((m) => m.ok),
      [true, true, true, false],
    );
    assert.equal(first.messages![3]!.mail, '450 4.7.1 Error: too much mail from 127.0.0.5');
    const other = await smtplib({ src: '127.0.0.6', messages: msgs(1, 'other') });
    assert.equal(other.messages![0]!.ok, true, 'another address is not limited');
    // Five recipients in one message: the fifth is over the rate of 4.
    const rcpts = await smtplib({
      src: '127.0.0.7',
      messages: [
        {
          from: 'f@client.example',
          to: ['g1@example.test', 'g2@example.test', 'g3@example.test', 'g4@example.test', 'g5@example.test'],
          subject: 'many',
        },
      ],
    });
    assert.deepEqual(rcpts.messages![0], {
      ok: true,
      refused: { 'g5@example.test': '450 4.7.1 Error: too many recipients from 127.0.0.7' },
    });
    // The window (2 s) passes: the limited client sends again.
    await new Promise((r) => setTimeout(r, Math.max(0, windowOpened + 2_100 - Date.now())));
    const later = await smtplib({ src: '127.0.0.5', messages: msgs(1, 'later') });
    assert.equal(later.messages![0]!.ok, true, JSON.stringify(later));
    await waitFor(() => mailbox('fay').length === 5, 'every accepted message delivered');
    assert.deepEqual(subjects('fay').sort(), ['burst 1', 'burst 2', 'burst 3', 'later 1', 'other 1']);
    await waitFor(
      () => ['g1', 'g2', 'g3', 'g4'].every((u) => mailbox(u).length === 1),
      'the four accepted recipients',
    );
    assert.deepEqual(mailbox('g5'), []);
    await waitFor(() => logged('client rate limit reached').length >= 2, 'the limits logged');
  });

  test('rates: the 4th connection in the window gets 421 4.7.0 at connect; another address connects; it recovers', async () => {
    const results: SmtplibResult[] = [];
    let opened = 0;
    for (let i = 0; i < 4; i++) {
      results.push(await smtplib({ src: '127.0.0.8' }));
      if (i === 0) opened = Date.now();
    }
    assert.deepEqual(
      results.map((r) => r.connect),
      [220, 220, 220, 421],
    );
    assert.match(results[3]!.text ?? '', /^4\.7\.0 mx\.test Error: too many connections from 127\.0\.0\.8/);
    assert.equal((await smtplib({ src: '127.0.0.9' })).connect, 220);
    await new Promise((r) => setTimeout(r, Math.max(0, opened + 2_100 - Date.now())));
    assert.equal((await smtplib({ src: '127.0.0.8' })).connect, 220, 'a new window');
  });

  test('logmta check refuses broken rules; SIGHUP applies new rules to new sessions, a broken file is refused', async () => {
    const cfg = d.configFile!;
    const good = readFileSync(cfg, 'utf8');
    const bad = join(dir, 'bad.toml');
    writeFileSync(
      bad,
      `${good}\n[[access]]\nclient = ["127.0.0.300/8"]\naction = "reject"\n[[access]]\naction = "defer"\n[[access]]\nsender = ["x.example"]\naction = "drop"\n`,
    );
    const check = await runLogmta(['check', '--config', bad]);
    assert.equal(check.code, 78, check.stdout);
    assert.match(check.stderr, /access\[4\]\.client\[1\]: expected a CIDR block/);
    assert.match(check.stderr, /access\[5\]: names nothing to match/);
    assert.match(
      check.stderr,
      /access\[6\]\.action: expected one of "reject", "defer", "permit", got "drop"/,
    );
    const ok = await runLogmta(['check', '--config', cfg]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /access +3 rule\(s\): client 1, sender 1, recipient 1/);
    assert.match(
      ok.stdout,
      /client rates +connections 3\/2s, messages 3\/2s, recipients 4\/2s; 1 exception block\(s\)/,
    );

    // The postmaster unblocks 127.0.0.2 and blocks 127.0.0.10 instead.
    assert.ok(good.includes('"127.0.0.2"'));
    writeFileSync(cfg, good.replace('"127.0.0.2"', '"127.0.0.10"'));
    d.kill('SIGHUP');
    await waitFor(() => logged('reloaded').length === 1, 'the reload done', 20_000);
    const freed = await swaks('127.0.0.2', 'carol@client.example', 'hal@example.test', 'after reload');
    assert.equal(freed.code, 0, freed.stdout);
    const blocked = await swaks('127.0.0.10', 'carol@client.example', 'hal@example.test', 'newly blocked');
    assert.match(
      blocked.stdout,
      /<~?\*\*? +554 5\.7\.1 Client host \[127\.0\.0\.10\] rejected: Blocked by the postmaster/,
    );

    // A broken edit is refused at SIGHUP: the rules in force stay.
    writeFileSync(cfg, readFileSync(bad, 'utf8'));
    d.kill('SIGHUP');
    await waitFor(() => /reload refused/.test(d.stdout()), 'the reload refused');
    const still = await swaks('127.0.0.10', 'carol@client.example', 'hal@example.test', 'still blocked');
    assert.match(still.stdout, /<~?\*\*? +554 5\.7\.1 Client host \[127\.0\.0\.10\]/);
    await waitFor(() => mailbox('hal').length === 1, 'the mail of the freed client delivered');
    assert.deepEqual(subjects('hal'), ['after reload']);
  });
});
