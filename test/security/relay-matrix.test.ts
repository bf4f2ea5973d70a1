// Open-relay matrix against real `logmta serve` processes: every feature that names a domain or
// grants trust, in one configuration, against every relay trick from an untrusted client.
// relay.test.ts is the classic battery against [[route]]s alone; this one crosses the tricks with
// each kind of domain we take from strangers — a local domain with and without `users`, a
// relay domain (one of them an IDN, configured in A-labels), an ETRN domain with and without
// `subdomains`, an ODMR account's domain — and with each kind of trust: AUTH accounts
// ([[user]]), ODMR accounts (which must grant nothing on the MTA listener), a submission
// listener, STARTTLS, and a `relay_networks` that does not hold 127.0.0.1. Every foreign
// domain, including the catch-all "*", is routed to one detector sink, so a relayed message
// would be seen; it must see nothing but the positive control (after AUTH) and the backscatter
// probe at the end. A second part starts `logmta serve` with relay_networks blocks that look
// narrow but hold every IPv4 address (IPv6 blocks over ::ffff:0:0/96): it must refuse to start.
// Backscatter: a success DSN (NOTIFY=SUCCESS) for a local delivery goes to whatever sender the
// client gave, foreign or not — RFC 3461 behaviour (docs/delivery.md), observed and pinned here;
// unknown local users are refused at RCPT, so they cause no bounce.
// Fails: naming the address or the session that relayed, with the replies.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TLS_TOML, tlsFiles } from '../support/certs.js';
import { codeOf, SmtpChat, type SpawnedDaemon, spawnDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';

let d: SpawnedDaemon;
let odmrPort = 0;
let foreign: SmtpSink;
let customer: SmtpSink;
let etrn: SmtpSink;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const PLAIN_ALICE = `AUTH PLAIN ${b64('\0alice\0pw-alice-1')}`;
const PLAIN_CUST = `AUTH PLAIN ${b64('\0cust\0pw-cust-1')}`;
const PLAIN_WRONG = `AUTH PLAIN ${b64('\0alice\0wrong')}`;

/** Domains that strangers may send to (each with its own destination, never the detector). */
const TAKEN = [
  'localhost',
  'corp.test',
  'customer.test',
  'xn--bcher-kva.test',
  'etrn.test',
  'etrnsub.test',
  'odmr.test',
];

before(async () => {
  foreign = await SmtpSink.start({});
  customer = await SmtpSink.start({ smtputf8: true });
  etrn = await SmtpSink.start({});
  d = await spawnDaemon({
    files: await tlsFiles(),
    toml: [
      'hostname = "mx.test"',
      '[smtp]',
      'listen = ["127.0.0.1:0"]',
      'submission = ["127.0.0.1:0"]',
      'relay_domains = ["customer.test", "xn--bcher-kva.test"]',
      // Trusts a network, not this client: 127.0.0.1 must be a stranger.
      'relay_networks = ["10.0.0.0/8", "fd00::/64", "::ffff:192.0.2.0/120"]',
      'auth_failure_delay = "0"',
      'auth_max_failures = 1000',
      TLS_TOML,
      '[queue]',
      'retry = ["1h"]',
      '[[user]]',
      'name = "alice"',
      'password = "pw-alice-1"',
      '[[local]]',
      'domain = "localhost"',
      '[[local]]',
      'domain = "corp.test"',
      'users = ["bob"]',
      ...['customer.test', 'xn--bcher-kva.test'].flatMap((domain) => [
        '[[route]]',
        `domain = "${domain}"`,
        `host = "127.0.0.1:${customer.port}"`,
      ]),
      ...['gmail.test', '*'].flatMap((domain) => [
        '[[route]]',
        `domain = "${domain}"`,
        `host = "127.0.0.1:${foreign.port}"`,
      ]),
      '[[etrn]]',
      'domain = "etrn.test"',
      `host = "127.0.0.1:${etrn.port}"`,
      '[[etrn]]',
      'domain = "etrnsub.test"',
      'subdomains = true',
      `host = "127.0.0.1:${etrn.port}"`,
      '[odmr]',
      'listen = ["127.0.0.1:0"]',
      '[[odmr.account]]',
      'user = "cust"',
      'password = "pw-cust-1"',
      'domains = ["odmr.test"]',
    ].join('\n'),
  });
  odmrPort = Number(/ODMR \(ATRN\) on 127\.0\.0\.1:(\d+)/.exec(d.stderr())?.[1] ?? 0);
  assert.ok(odmrPort > 0, d.stderr());
});

after(async () => {
  await d?.stop();
  await foreign.close();
  await customer.close();
  await etrn.close();
});

/** EHLO, then `lines` one at a time on a fresh connection; the first line of every reply. */
async function converse(port: number, lines: string[]): Promise<string[]> {
  const { chat } = await SmtpChat.open(port);
  try {
    const out = [(await chat.ask('EHLO matrix.example\r\n'))[0] ?? ''];
    for (const l of lines) {
      if (chat.closed) break;
      out.push((await chat.ask(`${l}\r\n`))[0] ?? '');
    }
    return out;
  } finally {
    chat.close();
  }
}

/** The RCPT reply and, when RCPT was taken, the reply to the final dot. */
async function attempt(rcpt: string, from = '<spammer@evil.test>'): Promise<{ rcpt: string; end?: string }> {
  const { chat } = await SmtpChat.open(d.port);
  try {
    await chat.ask('EHLO matrix.example\r\n');
    const [mail = ''] = await chat.ask(`MAIL FROM:${from}\r\n`);
    if (!mail.startsWith('250')) return { rcpt: `MAIL: ${mail}` };
    const [r = ''] = await chat.ask(`RCPT TO:${rcpt}\r\n`);
    if (!r.startsWith('250')) return { rcpt: r };
    const [data = ''] = await chat.ask('DATA\r\n');
    if (!data.startsWith('354')) return { rcpt: r, end: data };
    const [end = ''] = await chat.ask(`Subject: matrix probe ${rcpt}\r\n\r\nprobe\r\n.\r\n`);
    return { rcpt: r, end };
  } finally {
    chat.close();
  }
}

const FOREIGN = 'gmail.test';

/** Every trick that asks a domain we take mail for to pass the mail on to a foreign one. */
function tricksVia(domain: string): string[] {
  const up = domain.toUpperCase();
  return [
    `<user%${FOREIGN}@${domain}>`,
    `<USER%${FOREIGN.toUpperCase()}@${up}>`,
    `<"user%${FOREIGN}"@${domain}>`,
    `<user@${FOREIGN}%${domain}>`,
    `<"user@${FOREIGN}"@${domain}>`,
    `<"user\\@${FOREIGN}"@${domain}>`,
    `<user@${FOREIGN}@${domain}>`,
    `<${FOREIGN}!user@${domain}>`,
    `<${domain}!${FOREIGN}!user>`,
    `<@${domain}:user@${FOREIGN}>`,
    `<@${up}:user@${FOREIGN}>`,
    `<@${domain},@mx.test:user@${FOREIGN}>`,
    `<user@${domain}.${FOREIGN}>`,
    `<user@x${domain}>`,
  ];
}

const REFUSED: string[] = [
  ...TAKEN.flatMap(tricksVia),
  // Subdomains: none of these domains includes them (only etrnsub.test, subdomains = true).
  ...TAKEN.filter((x) => x !== 'etrnsub.test').map((x) => `<user@sub.${x}>`),
  // Plain foreign recipients, in every spelling.
  `<user@${FOREIGN}>`,
  `<USER@${FOREIGN.toUpperCase()}>`,
  '<user@unrouted.test>',
  `<postmaster@${FOREIGN}>`,
  `<MAILER-DAEMON@${FOREIGN}>`,
  `<abuse@${FOREIGN}>`,
  // Address literals, ours and others'.
  '<user@[127.0.0.1]>',
  '<user@[1.2.3.4]>',
  '<user@[10.0.0.1]>',
  '<user@[IPv6:::1]>',
  '<user@[IPv6:::ffff:10.0.0.1]>',
  // Look-alikes of the IDN relay domain bücher.test (xn--bcher-kva.test).
  '<user@bucher.test>',
  '<user@xn--bcher-kva.test.evil.test>',
  '<user@xn--bcher-kva-.test>',
  // An unknown user of a local domain with `users` (refused at RCPT: no bounce later).
  '<nosuch@corp.test>',
];

/** What a stranger may send, and where it must end up. */
const TAKEN_RCPTS = {
  customer: ['<a@customer.test>', '<B@CUSTOMER.TEST>', '<c@xn--bcher-kva.test>'],
  etrn: ['<d@etrn.test>', '<e@etrnsub.test>', '<f@deep.sub.etrnsub.test>'],
  local: ['<bob@corp.test>', '<BOB@Corp.Test>', '<postmaster@corp.test>', '<carol@localhost>'],
};

const mailRoot = (): string => path.join(d.dataDir, 'mail');
function messagesIn(user: string): number {
  const dir = path.join(mailRoot(), user, 'new');
  return existsSync(dir) ? readdirSync(dir).length : 0;
}

describe('open-relay matrix: every domain-naming and trust-granting feature at once (logmta serve)', () => {
  for (const rcpt of REFUSED) {
    test(`RCPT TO:${rcpt} from a stranger is refused`, async () => {
      const r = await attempt(rcpt);
      assert.match(r.rcpt, /^5\d\d /, `${rcpt} got ${JSON.stringify(r)}`);
    });
  }

  test('trailing dots are bad syntax (501), on every kind of domain', async () => {
    for (const x of [...TAKEN, FOREIGN]) {
      const r = await attempt(`<user@${x}.>`);
      assert.match(r.rcpt, /^501 /, `${x}.: ${JSON.stringify(r)}`);
    }
  });

  test('no sender makes a foreign recipient ours: null, local, postmaster, relay-domain senders', async () => {
    const senders = ['<>', '<bob@corp.test>', '<postmaster@localhost>', '<x@customer.test>', '<x@odmr.test>'];
    for (const from of senders) {
      for (const rcpt of [`<user@${FOREIGN}>`, `<user%${FOREIGN}@customer.test>`]) {
        const r = await attempt(rcpt, from);
        assert.match(r.rcpt, /^554 5\.7\.1 /, `MAIL FROM:${from} RCPT TO:${rcpt}: ${JSON.stringify(r)}`);
      }
    }
  });

  test('the IDN relay domain is the same domain in U-labels (SMTPUTF8); a look-alike is not', async () => {
    const ok = await attempt('<u@b\u00fccher.test>', '<s@evil.test> SMTPUTF8');
    assert.match(ok.end ?? '', /^250 /, JSON.stringify(ok));
    for (const rcpt of [
      '<u@b\u00fccher.test.evil.test>',
      '<u@bu\u0308cher-x.test>',
      '<u@b\u00fccher\u3002test.evil.test>',
    ]) {
      const r = await attempt(rcpt, '<s@evil.test> SMTPUTF8');
      assert.match(r.rcpt, /^5\d\d /, `${rcpt}: ${JSON.stringify(r)}`);
    }
  });

  test('an ODMR account is no AUTH account: refused on the MTA and submission listeners', async () => {
    for (const port of [d.port, d.submissionPort ?? 0]) {
      const r = await converse(port, [PLAIN_CUST, 'MAIL FROM:<cust@odmr.test>', `RCPT TO:<user@${FOREIGN}>`]);
      assert.equal(codeOf(r[1] ?? ''), '535 5.7.8', `port ${port}: ${JSON.stringify(r)}`);
      assert.match(r[3] ?? '', port === d.port ? /^554 5\.7\.1 / : /^503 /, JSON.stringify(r));
    }
  });

  test('the ODMR listener takes no mail, authenticated or not, and no PLAIN without TLS', async () => {
    const plain = await converse(odmrPort, [PLAIN_CUST, 'MAIL FROM:<x@evil.test>']);
    assert.equal(codeOf(plain[1] ?? ''), '538 5.7.11', JSON.stringify(plain));
    assert.match(plain[2] ?? '', /^50[23] /, JSON.stringify(plain));
    const { chat } = await SmtpChat.open(odmrPort);
    try {
      await chat.ask('EHLO matrix.example\r\n');
      const [challenge = ''] = await chat.ask('AUTH CRAM-MD5\r\n');
      const c = Buffer.from(challenge.slice(4), 'base64').toString('utf8');
      const digest = createHmac('md5', 'pw-cust-1').update(c).digest('hex');
      assert.equal(codeOf((await chat.ask(`${b64(`cust ${digest}`)}\r\n`))[0] ?? ''), '235 2.7.0');
      const r = await chat.ask(`MAIL FROM:<x@evil.test>\r\nRCPT TO:<user@${FOREIGN}>\r\nDATA\r\n`, 3);
      for (const x of r) assert.match(x, /^5\d\d /, JSON.stringify(r));
    } finally {
      chat.close();
    }
  });

  test('a failed AUTH, then RSET and a new transaction, grants nothing', async () => {
    const mta = await converse(d.port, [
      PLAIN_WRONG,
      'RSET',
      'MAIL FROM:<alice@localhost>',
      `RCPT TO:<user@${FOREIGN}>`,
      'RSET',
      'AUTH LOGIN',
      b64('alice'),
      b64('nope'),
      'MAIL FROM:<alice@localhost>',
      `RCPT TO:<user@${FOREIGN}>`,
    ]);
    assert.deepEqual(
      mta.slice(1).map(codeOf),
      [
        '535 5.7.8',
        '250 2.0.0',
        '250 2.1.0',
        '554 5.7.1',
        '250 2.0.0',
        '334',
        '334',
        '535 5.7.8',
        '250 2.1.0',
        '554 5.7.1',
      ],
      JSON.stringify(mta),
    );
    const sub = await converse(d.submissionPort ?? 0, [PLAIN_WRONG, 'RSET', 'MAIL FROM:<alice@localhost>']);
    assert.deepEqual(sub.slice(1).map(codeOf), ['535 5.7.8', '250 2.0.0', '530 5.7.0'], JSON.stringify(sub));
  });

  test('AUTH in plaintext does not survive STARTTLS, on the MTA and submission listeners', async () => {
    for (const port of [d.port, d.submissionPort ?? 0]) {
      const { chat } = await SmtpChat.open(port);
      try {
        await chat.ask('EHLO matrix.example\r\n');
        assert.equal(codeOf((await chat.ask(`${PLAIN_ALICE}\r\n`))[0] ?? ''), '235 2.7.0');
        assert.match((await chat.ask('STARTTLS\r\n'))[0] ?? '', /^220 /);
        await chat.startTls();
        await chat.ask('EHLO matrix.example\r\n');
        const [mail = ''] = await chat.ask('MAIL FROM:<alice@localhost>\r\n');
        if (port === d.port) {
          assert.match(mail, /^250 /);
          const [r = ''] = await chat.ask(`RCPT TO:<user@${FOREIGN}>\r\n`);
          assert.match(r, /^554 5\.7\.1 /, `port ${port}: AUTH survived STARTTLS: ${r}`);
        } else assert.equal(codeOf(mail), '530 5.7.0', `port ${port}: AUTH survived STARTTLS: ${mail}`);
      } finally {
        chat.close();
      }
    }
  });

  test('what strangers may send goes to its own destination only', async () => {
    for (const rcpt of [
      ...TAKEN_RCPTS.customer,
      ...TAKEN_RCPTS.etrn,
      ...TAKEN_RCPTS.local,
      '<g@odmr.test>',
    ]) {
      const r = await attempt(rcpt);
      assert.match(r.end ?? '', /^250 /, `${rcpt}: ${JSON.stringify(r)}`);
    }
    // +1: the U-label message of the IDN test above.
    await waitFor(
      () => customer.transactions.length >= TAKEN_RCPTS.customer.length + 1,
      'customer sink transactions',
    );
    await waitFor(() => etrn.transactions.length >= TAKEN_RCPTS.etrn.length, 'etrn sink transactions');
    await waitFor(
      () => messagesIn('bob') === 2 && messagesIn('postmaster') === 1 && messagesIn('carol') === 1,
      'the local deliveries',
    );
    const domains = (s: SmtpSink): string[] =>
      s.transactions.flatMap((t) => t.recipients.map((r) => r.slice(r.lastIndexOf('@') + 1).toLowerCase()));
    for (const x of domains(customer)) assert.ok(['customer.test', 'xn--bcher-kva.test'].includes(x), x);
    for (const x of domains(etrn)) assert.ok(x === 'etrn.test' || x.endsWith('etrnsub.test'), x);
  });

  test('nothing was relayed: the detector behind the foreign and "*" routes saw no connection', async () => {
    await waitFor(() => customer.transactions.length === TAKEN_RCPTS.customer.length + 1, 'deliveries');
    assert.equal(foreign.connections, 0, JSON.stringify(foreign.transactions.map((t) => t.recipients)));
    for (const m of readdirSync(mailRoot()))
      assert.ok(['bob', 'postmaster', 'carol'].includes(m), `unexpected mailbox ${m}`);
  });

  test('positive control: after AUTH under TLS, the same route reaches the detector', async () => {
    const { chat } = await SmtpChat.open(d.submissionPort ?? 0);
    try {
      await chat.ask('EHLO matrix.example\r\n');
      assert.match((await chat.ask('STARTTLS\r\n'))[0] ?? '', /^220 /);
      await chat.startTls();
      await chat.ask('EHLO matrix.example\r\n');
      assert.equal(codeOf((await chat.ask(`${PLAIN_ALICE}\r\n`))[0] ?? ''), '235 2.7.0');
      const r = await chat.ask(`MAIL FROM:<alice@localhost>\r\nRCPT TO:<friend@${FOREIGN}>\r\nDATA\r\n`, 3);
      assert.deepEqual(r.map(codeOf), ['250 2.1.0', '250 2.1.5', '354']);
      assert.equal(codeOf((await chat.ask('Subject: ok\r\n\r\nhi\r\n.\r\n'))[0] ?? ''), '250 2.0.0');
    } finally {
      chat.close();
    }
    await waitFor(() => foreign.transactions.length >= 1, 'foreign sink transactions');
    assert.deepEqual(foreign.transactions[0]?.recipients, [`friend@${FOREIGN}`]);
  });

  test('backscatter: a success DSN for a local delivery goes to the given sender (RFC 3461), as a report', async () => {
    const r = await converse(d.port, [
      `MAIL FROM:<victim@${FOREIGN}> RET=HDRS`,
      'RCPT TO:<bob@corp.test> NOTIFY=SUCCESS',
      'DATA',
      'Subject: reflected\r\n\r\nspam body\r\n.',
    ]);
    assert.deepEqual(
      r.slice(1).map(codeOf),
      ['250 2.1.0', '250 2.1.5', '354', '250 2.0.0'],
      JSON.stringify(r),
    );
    await waitFor(() => foreign.transactions.length >= 2, 'foreign sink transactions');
    const dsn = foreign.transactions[1];
    assert.equal(dsn?.sender, '', 'a DSN has the null sender');
    assert.deepEqual(dsn?.recipients, [`victim@${FOREIGN}`]);
    const text = dsn?.data.toString('latin1') ?? '';
    assert.match(text, /multipart\/report/i);
    assert.doesNotMatch(text, /spam body/, 'RET=HDRS: the body is not reflected');
  });
});

describe('relay_networks blocks that hold every IPv4 address are refused (logmta serve)', () => {
  // IPv6 blocks over the IPv4-mapped range ::ffff:0:0/96 match IPv4 clients (config/net.ts).
  for (const block of ['::ffff:0:0/96', '::ffff:0.0.0.0/97', '::/16', '::/80', '0:0:0:0:0:ffff::/96']) {
    test(`relay_networks = ["${block}"] does not start`, async () => {
      let started: SpawnedDaemon | undefined;
      try {
        started = await spawnDaemon({ toml: `[smtp]\nrelay_networks = ["${block}"]` });
      } catch (e) {
        assert.match(String(e), /relay_networks/, String(e));
        return;
      }
      try {
        const r = await converse(started.port, ['MAIL FROM:<s@evil.test>', `RCPT TO:<user@${FOREIGN}>`]);
        assert.fail(`started, and RCPT TO:<user@${FOREIGN}> from 127.0.0.1 got ${JSON.stringify(r[2])}`);
      } finally {
        await started.stop();
      }
    });
  }

  test('a narrow block inside the mapped range is as good as its IPv4 form', async () => {
    const ok = await spawnDaemon({ toml: '[smtp]\nrelay_networks = ["::ffff:127.0.0.0/104"]' });
    try {
      const r = await converse(ok.port, ['MAIL FROM:<s@evil.test>', `RCPT TO:<user@${FOREIGN}>`]);
      assert.match(r[2] ?? '', /^250 /, 'the block holds 127.0.0.1');
    } finally {
      await ok.stop();
    }
  });
});
