// Delivery reports as the sender lives them: a real `logmta serve` relays for loopback clients to
// next hops that refuse, defer or take each recipient, and its reports travel to the sender's own
// mail host like any mail — a host that may be down when they are made. What is checked is what
// arrives there, read by Python's email package (an independent MIME parser): one report per
// event, each recipient named once, never a report about a delivered recipient unless it asked
// for NOTIFY=SUCCESS, and the RFC 3461 parameters (ENVID, ORCPT, RET, NOTIFY) carried through.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { SmtpClient } from '../../src/smtp/client/index.js';
import {
  LOGMTA_BIN,
  maildirMessages,
  makeTempDir,
  runTool,
  waitFor,
  waitForMaildir,
} from '../support/daemon.js';
import { readReport } from '../support/dsn-python.js';
import { sendMail } from '../support/inject.js';
import { hasPythonEmail } from '../support/mime-check.js';
import { type SinkTransaction, SmtpSink } from '../support/sink.js';
import { atrn, type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();
const skip = hasPythonEmail() ? false : 'python3 with its email package is not installed';

/** A relay for loopback clients retrying every second, with one route per domain. */
function relayToml(routes: Record<string, number>, queue = ''): string {
  let t = `[smtp]\nrelay_networks = ["127.0.0.0/8"]\n[queue]\nretry = ["1s"]\n${queue}\n`;
  for (const [domain, port] of Object.entries(routes))
    t += `[[route]]\ndomain = "${domain}"\nhost = "127.0.0.1:${port}"\n`;
  return t;
}

/** The reports a host received (transactions from the null sender). */
const reportsAt = (h: CustomerHost): SinkTransaction[] => h.received.filter((t) => t.sender === '');

/** Waits until the daemon's queue is empty (every lane). */
const drained = (s: Stage): Promise<void> =>
  s.waitLanes((l) => Object.values(l).every((n) => n === 0), 'an empty queue', 20_000);

describe('bounces as the sender receives them', { skip }, () => {
  test('a refused recipient: one bounce, made while the sender host was down, read by a MIME parser', async () => {
    const dst = await scene.customer();
    const home = await scene.customer(); // the sender's mail host: down for now
    await dst.up({ rcptReply: (a) => (a === 'gone@dst.test' ? '550 5.1.1 no such user here' : undefined) });
    const s = await scene.stage({ toml: relayToml({ 'dst.test': dst.port, 'sender.test': home.port }) });
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [
        { address: 'gone@dst.test', orcpt: 'rfc822;Gone+Alias@dst.test', notify: ['FAILURE'] },
        'ok@dst.test',
      ],
      subject: 'quarterly figures',
      body: 'SECRET-BODY\r\n',
      ret: 'HDRS',
      envid: 'batch 7+x=1',
    });
    await s.waitLog('failed');
    // The bounce met the refused connection of the sender's host and waits for its retry.
    await waitFor(
      () => s.logLines().some((l) => l.msg === 'deferred' && l.rcpt === 'bob@sender.test'),
      'the bounce deferred',
    );
    await home.up();
    await s.admin('flush');
    await home.waitFor(1, 'the bounce');
    await drained(s);
    assert.deepEqual(dst.recipients(), ['ok@dst.test']);
    const reports = reportsAt(home);
    assert.equal(home.received.length, 1, 'one message at the sender host: the bounce');
    assert.deepEqual(reports[0]!.recipients, ['bob@sender.test']);

    const r = await readReport(reports[0]!.data);
    assert.deepEqual(r.defects, []);
    assert.equal(r.contentType, 'multipart/report');
    assert.equal(r.reportType, 'delivery-status');
    assert.deepEqual(r.parts, ['text/plain', 'message/delivery-status', 'text/rfc822-headers']);
    assert.match(r.from, /<MAILER-DAEMON@mx\.test>$/);
    assert.equal(r.to, '<bob@sender.test>');
    assert.equal(r.autoSubmitted, 'auto-replied');
    assert.equal(r.perMessage['reporting-mta'], 'dns; mx.test');
    assert.equal(r.perMessage['original-envelope-id'], 'batch 7+x=1');
    assert.ok(r.perMessage['arrival-date'], 'Arrival-Date');
    assert.equal(r.perRecipient.length, 1, 'only the refused recipient is named');
    const g = r.perRecipient[0]!;
    assert.equal(g['final-recipient'], 'rfc822; gone@dst.test');
    assert.equal(g['original-recipient'], 'rfc822;Gone+Alias@dst.test');
    assert.equal(g.action, 'failed');
    assert.equal(g.status, '5.1.1');
    assert.equal(g['remote-mta'], 'dns; 127.0.0.1');
    assert.equal(g['diagnostic-code'], 'smtp; 550 5.1.1 no such user here');
    assert.ok(g['last-attempt-date'], 'Last-Attempt-Date');
    // RET=HDRS: the original's header fields, not its body.
    assert.equal(r.returned.type, 'text/rfc822-headers');
    assert.equal(r.returned.headers.subject, 'quarterly figures');
    assert.equal(r.returned.headers.from, '<bob@sender.test>');
    assert.doesNotMatch(reports[0]!.data.toString('latin1'), /SECRET-BODY/);
  });

  test('one message, every fate: each recipient reported once, and only as it asked', async () => {
    // now, told: taken at once (told asked NOTIFY=SUCCESS; the hop offers no DSN: "relayed").
    // fail: refused for good. quiet: refused, NOTIFY=NEVER. later: deferred twice, then taken.
    // delay: deferred twice with NOTIFY=DELAY (past delay_warning), then taken. never: deferred
    // until max_age.
    const tries = new Map<string, number>();
    const dst = await scene.customer();
    await dst.up({
      rcptReply: (a) => {
        const n = (tries.get(a) ?? 0) + 1;
        tries.set(a, n);
        if (a.startsWith('fail@') || a.startsWith('quiet@')) return '550 5.1.1 no such user';
        if (a.startsWith('never@')) return '450 4.2.1 mailbox busy';
        if ((a.startsWith('later@') || a.startsWith('delay@')) && n <= 2) return '451 4.3.0 try again';
        return undefined;
      },
    });
    const home = await scene.customer();
    await home.up();
    const s = await scene.stage({
      toml: relayToml(
        { 'dst.test': dst.port, 'sender.test': home.port },
        'max_age = "5s"\ndelay_warning = "800ms"',
      ),
    });
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [
        'now@dst.test',
        { address: 'told@dst.test', notify: ['SUCCESS'] },
        'fail@dst.test',
        { address: 'quiet@dst.test', notify: ['NEVER'] },
        'later@dst.test',
        { address: 'delay@dst.test', notify: ['DELAY', 'FAILURE'] },
        'never@dst.test',
      ],
      subject: 'every fate',
    });
    await waitFor(
      () => s.logLines().some((l) => l.msg === 'failed' && l.rcpt === 'never@dst.test'),
      'never@dst.test expired',
      20_000,
    );
    await drained(s);
    assert.deepEqual(dst.recipients().sort(), [
      'delay@dst.test',
      'later@dst.test',
      'now@dst.test',
      'told@dst.test',
    ]);
    const got = await Promise.all(reportsAt(home).map((t) => readReport(t.data)));
    const named = got.map((r) =>
      r.perRecipient.map((g) => `${g.action} ${g['final-recipient']} ${g.status}`),
    );
    assert.deepEqual(
      named.flat().sort(),
      [
        'delayed rfc822; delay@dst.test 4.3.0',
        'failed rfc822; fail@dst.test 5.1.1',
        'failed rfc822; never@dst.test 4.4.7',
        'relayed rfc822; told@dst.test 2.0.0',
      ],
      JSON.stringify(named),
    );
    assert.equal(got.length, 4, `one report per event: ${JSON.stringify(named)}`);
    for (const r of got) assert.deepEqual(r.defects, []);
  });
});

describe('an unusual return path', { skip }, () => {
  test('a quoted local part with a tag gets its bounce at exactly that address', async () => {
    const sender = '"john doe+tag"@sender.test';
    const dst = await scene.customer();
    await dst.up({ rcptReply: () => '550 5.1.1 no such user' });
    const home = await scene.customer();
    await home.up();
    const s = await scene.stage({ toml: relayToml({ 'dst.test': dst.port, 'sender.test': home.port }) });
    await sendMail(s.port, { from: sender, to: ['r@dst.test'] });
    await home.waitFor(1, 'the bounce');
    assert.deepEqual(home.received[0]!.recipients, [sender]);
    const r = await readReport(home.received[0]!.data);
    assert.equal(r.to, `<${sender}>`);
    assert.deepEqual(r.defects, []);
  });
});

describe('a recipient given twice', { skip }, () => {
  test('one copy per mailbox and per next-hop recipient, and the bounce names the refused one once', async () => {
    const dst = await scene.customer();
    await dst.up({ rcptReply: (a) => (a.startsWith('gone@') ? '550 5.1.1 no such user' : undefined) });
    const s = await scene.stage({
      toml: `${relayToml({ 'dst.test': dst.port })}[[local]]\ndomain = "sender.test"\n`,
    });
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [
        'alice@sender.test',
        'alice@sender.test',
        'Alice@Sender.Test', // the same mailbox: local parts of local mailboxes are case-blind
        'ok@dst.test',
        'ok@DST.test',
        'gone@dst.test',
        'gone@dst.test',
      ],
    });
    const [bounce] = await waitForMaildir(`${s.dataDir}/mail/bob`, 1);
    await drained(s);
    await s.waitLog('delivered', 2);
    assert.deepEqual(dst.recipients(), ['ok@dst.test']);
    assert.equal(maildirMessages(`${s.dataDir}/mail/alice`).length, 1, 'one copy in the mailbox');
    const r = await readReport(Buffer.from(bounce!, 'latin1'));
    assert.deepEqual(
      r.perRecipient.map((g) => g['final-recipient']),
      ['rfc822; gone@dst.test'],
    );
  });
  test('sendmail given the same recipient twice hands it to the next hop once', async () => {
    const dst = await scene.customer();
    await dst.up();
    const s = await scene.stage({ toml: relayToml({ 'dst.test': dst.port }) });
    const r = await runTool(
      process.execPath,
      [
        ...[LOGMTA_BIN, 'sendmail', '--config', s.daemon.configFile!, '-f', 'bob@sender.test'],
        ...['ok@dst.test', 'other@dst.test', 'ok@dst.test'],
      ],
      { input: 'Subject: twice\n\nhi\n' },
    );
    assert.equal(r.code, 0, r.stderr);
    await dst.waitFor(2);
    await drained(s);
    assert.deepEqual(dst.recipients().sort(), ['ok@dst.test', 'other@dst.test']);
  });
});

describe('a long refusal', { skip }, () => {
  test('a next hop that explains itself at length: the bounce keeps every line within 998 octets', async () => {
    const words = (n: number) => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');
    const lines = Array.from({ length: 20 }, (_, i) => `550${i < 19 ? '-' : ' '}5.7.1 ${words(30)}`);
    const dst = await scene.customer();
    await dst.up({ rcptReply: () => lines.join('\r\n') });
    const home = await scene.customer();
    await home.up();
    const s = await scene.stage({ toml: relayToml({ 'dst.test': dst.port, 'sender.test': home.port }) });
    await sendMail(s.port, { from: 'bob@sender.test', to: ['r@dst.test'] });
    await home.waitFor(1, 'the bounce');
    const data = home.received[0]!.data.toString('latin1');
    const longest = Math.max(...data.split('\r\n').map((l) => l.length));
    assert.ok(longest <= 998, `a line of ${longest} octets in the bounce`);
    const r = await readReport(home.received[0]!.data);
    assert.deepEqual(r.defects, []);
    // Unfolded, the whole reply is still there.
    const diag = r.perRecipient[0]!['diagnostic-code'] ?? '';
    assert.match(diag, /^smtp; 550 5\.7\.1 word0 /);
    assert.equal(diag.split('word29').length - 1, 20, diag);
  });
});

describe('what the next hop and the sender are told', { skip }, () => {
  test('a next hop offering DSN is handed RET, ENVID, NOTIFY and ORCPT as received; no notice from us', async () => {
    const dst = await scene.customer();
    await dst.up({ dsn: true });
    const home = await scene.customer();
    await home.up();
    const s = await scene.stage({ toml: relayToml({ 'dst.test': dst.port, 'sender.test': home.port }) });
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [
        { address: 'a@dst.test', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;A+B=C@dst.test' },
        { address: 'b@dst.test', notify: ['NEVER'] },
        'c@dst.test',
      ],
      ret: 'HDRS',
      envid: 'id+1=2 x',
    });
    await dst.waitFor(3);
    await drained(s);
    const tx = dst.received[0]!;
    assert.deepEqual(
      tx.mailParams.filter((p) => /^(RET|ENVID)=/.test(p)),
      ['RET=HDRS', 'ENVID=id+2B1+3D2+20x'],
    );
    assert.deepEqual(tx.rcptParams, [
      ['NOTIFY=SUCCESS,DELAY', 'ORCPT=rfc822;A+2BB+3DC@dst.test'],
      ['NOTIFY=NEVER'],
      [],
    ]);
    assert.equal(home.received.length, 0, 'the next hop reports success itself');
  });

  test("a delay warning for mail held for an ETRN domain promises the domain's max_age, not the queue's", async () => {
    const branch = await scene.customer(); // the ETRN customer's host: down
    const s = await scene.stage({
      toml: `
[queue]
delay_warning = "1s"
max_age = "5d"

[[local]]
domain = "sender.test"

[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${branch.port}"
probe_interval = "1h"
max_age = "2h"
`,
    });
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [{ address: 'x@branch.example', notify: ['DELAY', 'FAILURE'] }],
    });
    const accepted = Date.now(); // the arrival time is no later than this
    await s.waitHeld('branch.example', 1);
    // The warning is due at delay_warning: sent by the expiry sweep, or by an ETRN flush that
    // finds the host still down, whichever comes first (test/scenarios/held-warning.test.ts).
    await waitFor(() => Date.now() - accepted > 1_100, 'delay_warning to pass');
    assert.match(await s.etrn('branch.example'), /^25\d /);
    const box = `${s.dataDir}/mail/bob`;
    const [warning] = await waitForMaildir(box, 1, 15_000);
    const r = await readReport(Buffer.from(warning!, 'latin1'));
    const g = r.perRecipient[0]!;
    assert.equal(g.action, 'delayed');
    const until = Date.parse(g['will-retry-until'] ?? '');
    const arrival = Date.parse(r.perMessage['arrival-date'] ?? '');
    assert.ok(
      Math.abs(until - arrival - 2 * 3600_000) < 5_000,
      `Will-Retry-Until ${g['will-retry-until']}, arrival ${r.perMessage['arrival-date']}`,
    );
  });
});

describe('content a next hop cannot take', { skip }, () => {
  /** Sends `data` (BODY=8BITMIME, SMTPUTF8 when asked) from bob@sender.test to `to`. */
  async function send8bit(port: number, to: string, data: Buffer, smtputf8: boolean): Promise<void> {
    const c = await SmtpClient.connect('127.0.0.1', port, { name: 'injector.test', tls: { mode: 'none' } });
    try {
      const res = await c.sendMessage({
        sender: 'bob@sender.test',
        recipients: [{ address: to }],
        smtputf8,
        body8bit: true,
        size: data.length,
        data: [data],
      });
      assert.equal(res.recipients[0]?.status, 'delivered', res.recipients[0]?.text);
    } finally {
      await c.quit();
    }
  }

  const message = (to: string) =>
    Buffer.from(
      `From: Bob <bob@sender.test>\r\nTo: <${to}>\r\nSubject: Grüße aus Köln\r\n` +
        'Message-ID: <utf8-1@sender.test>\r\nMIME-Version: 1.0\r\n' +
        'Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nÄpfel.\r\n',
      'utf8',
    );

  const cases = [
    {
      what: 'UTF-8 header fields (SMTPUTF8) for a hop without SMTPUTF8: a 5.6.7 bounce reaches a sender host with 8BITMIME',
      smtputf8: true,
      dst: { smtputf8: false },
      home: { smtputf8: false },
      status: '5.6.7',
      returned: 'message/global',
    },
    {
      what: 'UTF-8 header fields (SMTPUTF8) for a hop without SMTPUTF8: a 5.6.7 bounce reaches a sender host without 8BITMIME',
      smtputf8: true,
      dst: { smtputf8: false },
      home: { smtputf8: false, eightBitMime: false },
      status: '5.6.7',
      returned: 'message/global',
    },
    {
      what: '8-bit header fields without SMTPUTF8 for a hop without 8BITMIME: a 5.6.3 bounce with the headers only',
      smtputf8: false,
      dst: { eightBitMime: false },
      home: { eightBitMime: false },
      status: '5.6.3',
      returned: 'text/rfc822-headers',
    },
    {
      what: 'a UTF-8 recipient refused: the bounce reaches an ASCII sender whose host has neither SMTPUTF8 nor 8BITMIME',
      smtputf8: true,
      to: 'jörg@dst.test',
      dst: { smtputf8: true, rcptReply: () => '550 5.1.1 no such user' },
      home: { smtputf8: false, eightBitMime: false },
      status: '5.1.1',
      returned: 'message/global',
    },
  ];
  for (const c of cases)
    test(c.what, async () => {
      const dst = await scene.customer();
      await dst.up(c.dst);
      const home = await scene.customer();
      await home.up(c.home);
      const s = await scene.stage({ toml: relayToml({ 'dst.test': dst.port, 'sender.test': home.port }) });
      const to = c.to ?? 'r@dst.test';
      await send8bit(s.port, to, message(to), c.smtputf8);
      await s.waitLog('failed');
      await drained(s);
      assert.equal(dst.received.length, 0, 'nothing went out corrupted');
      const failed = s.logLines().filter((l) => l.msg === 'failed');
      assert.deepEqual(
        failed.map((l) => l.rcpt),
        [to],
        `only the original failed, not its bounce: ${JSON.stringify(failed)}`,
      );
      assert.equal(reportsAt(home).length, 1, 'the bounce arrived');
      const r = await readReport(reportsAt(home)[0]!.data);
      assert.deepEqual(r.defects, []);
      const g = r.perRecipient[0]!;
      assert.equal(g.action, 'failed');
      assert.equal(g.status, c.status);
      assert.equal(g['final-recipient'], `${to === 'r@dst.test' ? 'rfc822' : 'utf-8'}; ${to}`);
      // A message/global may be quoted-printable as a whole where 8BITMIME is missing.
      assert.equal(r.returned.type, c.returned);
      assert.equal(r.returned.headers['message-id'], '<utf8-1@sender.test>');
      assert.equal(
        (r.returned.body ?? '').replace(/\r\n/g, '\n'),
        c.returned === 'message/global' ? 'Äpfel.\n' : '',
      );
    });
});

describe("the postmaster's actions as the sender meets them", { skip }, () => {
  test('queue bounce returns the mail to those who asked for failures; queue delete tells no one', async () => {
    const dst = await scene.customer();
    await dst.up({ rcptReply: () => '451 4.3.0 try again later' });
    const home = await scene.customer();
    await home.up();
    const s = await scene.stage({
      toml: relayToml({ 'dst.test': dst.port, 'sender.test': home.port }).replace(
        'retry = ["1s"]',
        'retry = ["1h"]',
      ),
    });
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [
        'plain@dst.test',
        { address: 'never@dst.test', notify: ['NEVER'] },
        { address: 'glad@dst.test', notify: ['SUCCESS'] },
      ],
      subject: 'returned by the postmaster',
    });
    await sendMail(s.port, { from: 'bob@sender.test', to: ['plain@dst.test'], subject: 'deleted' });
    await s.waitLanes((l) => (l['retry-3600s'] ?? 0) === 2, 'both messages deferred');
    await s.waitLog('received', 2);
    const ids = s
      .logLines()
      .filter((l) => l.msg === 'received')
      .map((l) => String(l.id));
    await s.admin('bounce', { ids: [ids[0]] });
    await s.admin('delete', { ids: [ids[1]] });
    await home.waitFor(1, 'the bounce');
    await drained(s);
    assert.equal(home.received.length, 1, 'one report: the bounce; none for the deleted message');
    const r = await readReport(home.received[0]!.data);
    assert.deepEqual(
      r.perRecipient.map((g) => [g['final-recipient'], g.action, g.status]),
      [['rfc822; plain@dst.test', 'failed', '5.0.0']],
    );
    assert.match(r.perRecipient[0]!['diagnostic-code'] ?? '', /returned to sender by the postmaster/);
    assert.equal(r.returned.headers.subject, 'returned by the postmaster');
  });
});

describe('reports for mail collected with ATRN', { skip }, () => {
  test('the customer takes one recipient and refuses another: a "relayed" notice and a bounce naming its host', async () => {
    const s = await scene.stage({
      toml: `
[[local]]
domain = "sender.test"

[[odmr.account]]
user = "acme"
password = "acme-secret"
domains = ["acme.example"]
`,
    });
    await sendMail(s.port, {
      from: 'bob@sender.test',
      to: [{ address: 'glad@acme.example', notify: ['SUCCESS', 'FAILURE'] }, 'gone@acme.example'],
      subject: 'collected later',
    });
    await s.waitHeld('acme.example', 1);
    const session = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme.example'], {
      hostname: 'mail.acme.example',
      rcptReply: (a) => (a.startsWith('gone@') ? '550 5.1.1 no such user at acme' : undefined),
    });
    await session.done;
    assert.deepEqual(
      session.received.flatMap((t) => t.recipients),
      ['glad@acme.example'],
    );
    await s.waitHeld('acme.example', 0);
    const reports = await Promise.all(
      (await waitForMaildir(`${s.dataDir}/mail/bob`, 2)).map((m) => readReport(Buffer.from(m, 'latin1'))),
    );
    const seen = reports
      .flatMap((r) => r.perRecipient.map((g) => `${g.action} ${g['final-recipient']}`))
      .sort();
    assert.deepEqual(seen, ['failed rfc822; gone@acme.example', 'relayed rfc822; glad@acme.example']);
    const bounce = reports.find((r) => r.perRecipient[0]?.action === 'failed')!;
    assert.equal(bounce.perRecipient[0]!['remote-mta'], 'dns; mail.acme.example');
    assert.equal(bounce.perRecipient[0]!['diagnostic-code'], 'smtp; 550 5.1.1 no such user at acme');
    assert.equal(bounce.returned.headers.subject, 'collected later');
  });
});

describe('final delivery over LMTP', { skip }, () => {
  for (const via of ['tcp', 'unix'] as const)
    test(`over ${via}: a success notice says "delivered", a refusal bounces, and no report names a socket path`, async () => {
      const sockDir = makeTempDir('logmta-lmtp-');
      const socket = `${sockDir}/lmtp.sock`;
      const box = await SmtpSink.start({
        lmtp: true,
        ...(via === 'unix' ? { path: socket } : {}),
        lmtpReply: (a) => (a.startsWith('full@') ? '552 5.2.2 mailbox full' : undefined),
      });
      try {
        const where = via === 'unix' ? `unix:${socket}` : `127.0.0.1:${box.port}`;
        const s = await scene.stage({
          toml: `[[local]]\ndomain = "sender.test"\n[[local]]\ndomain = "box.test"\nlmtp = "${where}"\n`,
        });
        await sendMail(s.port, {
          from: 'bob@sender.test',
          to: [{ address: 'glad@box.test', notify: ['SUCCESS', 'FAILURE'] }, 'full@box.test'],
        });
        const got = await waitForMaildir(`${s.dataDir}/mail/bob`, 2);
        assert.deepEqual(
          box.transactions.flatMap((t) => t.recipients),
          ['glad@box.test'],
        );
        const reports = await Promise.all(got.map((m) => readReport(Buffer.from(m, 'latin1'))));
        const seen = reports.flatMap((r) =>
          r.perRecipient.map((g) => `${g.action} ${g['final-recipient']} ${g.status}`),
        );
        assert.deepEqual(seen.sort(), [
          'delivered rfc822; glad@box.test 2.0.0',
          'failed rfc822; full@box.test 5.2.2',
        ]);
        for (const m of got) assert.ok(!m.includes(sockDir), `a report names the socket's directory:\n${m}`);
        const mta = reports.map((r) => r.perRecipient[0]!['remote-mta']);
        assert.deepEqual(mta, via === 'unix' ? [undefined, undefined] : ['dns; 127.0.0.1', 'dns; 127.0.0.1']);
      } finally {
        await box.close();
        rmSync(sockDir, { recursive: true, force: true });
      }
    });
});
