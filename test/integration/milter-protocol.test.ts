// The milter client's protocol corners against a scripted filter (src/milter/testkit.ts) and a
// whole in-process daemon: refusals at each SMTP stage landing on the right command, several
// milters in order, body replacement, macro lists (SMFIR_SETSYMLIST), no-reply flags, ABORT
// after RSET. The real filters' behaviour is in test/interop/milter-*.test.ts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SMFIM, SMFIP, type MtaCommand } from '../../src/milter/protocol.js';
import { SmtpChat, startTestDaemon, type TestDaemon, waitFor, waitForMaildir } from '../support/daemon.js';
import { TLS_TOML, tlsFiles } from '../support/certs.js';
import { sendMessage } from '../support/mail.js';
import { type FakeMilter, type FakeMilterScript, startFakeMilter } from '../support/fake-milter.js';

const message = 'From: a@sender.example\r\nSubject: original\r\nX-Old: yes\r\n\r\noriginal body\r\n';

const started: { stop(): Promise<void> }[] = [];
after(async () => {
  for (const s of started.reverse()) await s.stop();
});

async function setup(...scripts: FakeMilterScript[]): Promise<{ d: TestDaemon; milters: FakeMilter[] }> {
  return setupWith({}, ...scripts);
}

async function setupWith(
  extra: { toml?: string; files?: Record<string, string> },
  ...scripts: FakeMilterScript[]
): Promise<{ d: TestDaemon; milters: FakeMilter[] }> {
  const milters: FakeMilter[] = [];
  for (const s of scripts) {
    const m = await startFakeMilter(s);
    milters.push(m);
    started.push({ stop: () => m.close() });
  }
  const d = await startTestDaemon({
    ...(extra.files ? { files: extra.files } : {}),
    toml: `${extra.toml ?? ''}
[[local]]
domain = "local.test"
maildir = "mail/{user}"
${milters.map((m, i) => `[[milter]]\nname = "m${i}"\naddress = "inet:127.0.0.1:${m.address.port}"\n`).join('')}`,
  });
  started.push(d);
  return { d, milters };
}

const box = (d: TestDaemon, u: string) => join(d.dataDir, 'mail', u);
const ofType = (seen: MtaCommand[] | undefined, t: MtaCommand['type']) =>
  (seen ?? []).filter((c) => c.type === t);

describe('milter protocol against a scripted filter', () => {
  test('a RCPT refusal with a custom reply code refuses that recipient only', async () => {
    const { d } = await setup({
      on: (c) =>
        c.type === 'rcpt' && c.args[0] === '<no@local.test>'
          ? [{ type: 'replycode', text: '550 5.1.1 no such mailbox here' }]
          : undefined,
    });
    const r = await sendMessage(d.port, {
      from: 'a@sender.example',
      to: ['no@local.test', 'yes@local.test'],
      message,
    });
    assert.deepEqual(
      r.rcpts.map((x) => x.slice(0, 9)),
      ['550 5.1.1', '250 2.1.5'],
    );
    assert.match(r.rcpts[0] ?? '', /no such mailbox here/);
    assert.match(r.final ?? '', /^250 /);
    await waitForMaildir(box(d, 'yes'));
  });

  test('a tempfail at MAIL is 451 4.7.1 on the MAIL command', async () => {
    const { d } = await setup({ on: (c) => (c.type === 'mail' ? [{ type: 'tempfail' }] : undefined) });
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['x@local.test'], message });
    assert.match(r.mail, /^451 4\.7\.1 /);
  });

  test('a reject at CONNECT gives a 554 greeting and the reason to MAIL', async () => {
    const { d } = await setup({
      on: (c) =>
        c.type === 'connect' ? [{ type: 'replycode', text: '550 5.7.1 you are not welcome' }] : undefined,
    });
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['x@local.test'], message });
    assert.match(r.greeting, /^554 mx\.test ESMTP not accepting connections/);
    assert.match(r.mail, /^550 5\.7\.1 you are not welcome/);
  });

  test('a multi-line reply at DATA is sent as is', async () => {
    const { d } = await setup({
      on: (c) =>
        c.type === 'data'
          ? [{ type: 'replycode', text: '550-5.7.1 first line\r\n550 5.7.1 second line' }]
          : undefined,
    });
    const c = await SmtpChat.connect(d.port);
    await c.read(1);
    await c.ask('EHLO c.test\r\n');
    await c.ask('MAIL FROM:<a@sender.example>\r\n');
    await c.ask('RCPT TO:<x@local.test>\r\n');
    c.send('DATA\r\n');
    const [reply = ''] = await c.read(1);
    c.close();
    assert.equal(reply, '550-5.7.1 first line\r\n550 5.7.1 second line\r\n');
  });

  test('the first milter that refuses wins; the next one never sees that event', async () => {
    const { milters, d } = await setup(
      { on: (c) => (c.type === 'rcpt' ? [{ type: 'reject' }] : undefined) },
      {},
    );
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['x@local.test'], message });
    assert.match(r.rcpts[0] ?? '', /^550 5\.7\.1 /);
    await waitFor(
      () => (milters[1]?.sessions[0] ?? []).some((c) => c.type === 'mail'),
      'the second milter saw MAIL',
    );
    assert.equal(ofType(milters[1]?.sessions[0], 'rcpt').length, 0);
    assert.equal(ofType(milters[0]?.sessions[0], 'rcpt').length, 1);
  });

  test('a body replacement and header change reach the mailbox; the second milter sees the edited message', async () => {
    const { d, milters } = await setup(
      {
        on: (c) =>
          c.type === 'eom'
            ? [
                { type: 'chgheader', index: 1, name: 'Subject', value: 'edited' },
                { type: 'chgheader', index: 1, name: 'X-Old', value: '' },
                { type: 'replbody', chunk: Buffer.from('new body\nsecond line') },
                { type: 'continue' },
              ]
            : undefined,
      },
      {},
    );
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['edit@local.test'], message });
    assert.match(r.final ?? '', /^250 /);
    const [m = ''] = await waitForMaildir(box(d, 'edit'));
    assert.match(m, /\nSubject: edited\n\nnew body\nsecond line\n$/);
    assert.doesNotMatch(m, /X-Old/);
    const second = milters[1]?.sessions[0] ?? [];
    assert.deepEqual(
      ofType(second, 'header').map((c) => (c.type === 'header' ? `${c.name}: ${c.value}` : '')),
      ['From: a@sender.example', 'Subject: edited'],
      "our Received: is not shown; the second milter sees the first one's edits",
    );
    const body = Buffer.concat(
      ofType(second, 'body').map((c) => (c.type === 'body' ? c.chunk : Buffer.alloc(0))),
    );
    assert.equal(body.toString(), 'new body\r\nsecond line\r\n');
  });

  test('recipients a milter adds get the message; NOTIFY given with ADDRCPT_PAR is honoured', async () => {
    const { d } = await setup({
      on: (c) =>
        c.type === 'eom'
          ? [
              { type: 'addrcpt', rcpt: '<plain@local.test>' },
              { type: 'addrcpt_par', rcpt: '<told@local.test>', args: 'NOTIFY=SUCCESS' },
              { type: 'continue' },
            ]
          : undefined,
    });
    const r = await sendMessage(d.port, { from: 'sender@local.test', to: ['orig@local.test'], message });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    for (const u of ['orig', 'plain', 'told']) {
      const [m = ''] = await waitForMaildir(box(d, u));
      assert.match(m, /\nSubject: original\n/, u);
    }
    // Only the recipient added with NOTIFY=SUCCESS makes a success report to the sender.
    const [report = ''] = await waitForMaildir(box(d, 'sender'));
    assert.match(report, /Final-Recipient: rfc822; ?told@local\.test/i);
    assert.match(report, /Action: delivered/i);
    assert.doesNotMatch(report, /Final-Recipient: rfc822; ?(plain|orig)@local\.test/i);
    await waitFor(() => d.settled(), 'the queue settled');
    assert.equal((await waitForMaildir(box(d, 'sender'))).length, 1, 'one report');
  });

  test('macros: the defaults at each stage, and a list the milter asked for instead', async () => {
    const { d, milters } = await setup({
      optneg: { actions: 0x1ff, macros: [[SMFIM.ENVRCPT, '{rcpt_host} {rcpt_mailer}']] },
    });
    await sendMessage(d.port, { from: 'a@sender.example', to: ['m@local.test'], message });
    const seen = milters[0]?.sessions[0] ?? [];
    const macros = (stage: string) =>
      Object.fromEntries(
        ofType(seen, 'macro').flatMap((c) => (c.type === 'macro' && c.stage === stage ? c.macros : [])),
      );
    assert.equal(macros('C').j, 'mx.test');
    assert.equal(macros('C')['{client_addr}'], '127.0.0.1');
    assert.equal(macros('M')['{mail_addr}'], 'a@sender.example');
    assert.deepEqual(macros('R'), { '{rcpt_host}': 'local.test', '{rcpt_mailer}': 'local' });
    assert.match(macros('E').i ?? '', /^[0-9A-F]{13}$/);
  });

  test('macros of an authenticated client over TLS: {auth_type}, {auth_authen}, {tls_version}, {cipher}, and from RCPT on i is the queue id', async () => {
    const { d, milters } = await setupWith(
      { toml: `${TLS_TOML}\n[[user]]\nname = "alice"\npassword = "alice-pw"\n`, files: await tlsFiles() },
      {},
    );
    const c = await SmtpChat.connect(d.port);
    try {
      await c.read(1);
      await c.ask('EHLO c.test\r\n');
      assert.match((await c.ask('STARTTLS\r\n'))[0] ?? '', /^220 /);
      await c.startTls();
      await c.ask('EHLO c.test\r\n');
      const token = Buffer.from('\0alice\0alice-pw').toString('base64');
      assert.match((await c.ask(`AUTH PLAIN ${token}\r\n`))[0] ?? '', /^235 /);
      const r = await c.ask('MAIL FROM:<alice@local.test>\r\nRCPT TO:<tm@local.test>\r\nDATA\r\n', 3);
      assert.deepEqual(
        r.map((x) => x.slice(0, 3)),
        ['250', '250', '354'],
      );
      assert.match((await c.ask(`${message}.\r\n`))[0] ?? '', /^250 /);
      await c.ask('QUIT\r\n');
    } finally {
      c.close();
    }
    const [m = ''] = await waitForMaildir(box(d, 'tm'));
    const queueId = /\n\tby mx\.test \(logmta\) with ESMTPSA id ([0-9A-F]+)/.exec(m)?.[1];
    assert.ok(queueId, m);
    const seen = milters[0]?.sessions[0] ?? [];
    const macros = (stage: string) =>
      Object.fromEntries(
        ofType(seen, 'macro').flatMap((x) => (x.type === 'macro' && x.stage === stage ? x.macros : [])),
      );
    assert.match(macros('H')['{tls_version}'] ?? '', /^TLSv1\.[23]$/);
    assert.ok((macros('H')['{cipher}'] ?? '') !== '', 'the cipher is named');
    assert.equal(macros('M')['{auth_type}'], 'PLAIN');
    assert.equal(macros('M')['{auth_authen}'], 'alice');
    // As with Postfix (smtpd_delay_open_until_valid_rcpt), the id exists once MAIL is accepted.
    assert.equal(macros('M').i, undefined);
    for (const stage of ['R', 'T', 'E'])
      assert.equal(macros(stage).i, queueId, `i at stage ${stage} is the id the message is queued under`);
  });

  test('with no-reply flags, headers and body go out without waiting and the message is accepted', async () => {
    const { d, milters } = await setup({
      optneg: { protocol: SMFIP.NR_HDR | SMFIP.NR_BODY | SMFIP.NR_RCPT },
      on: (c) => (c.type === 'header' || c.type === 'body' || c.type === 'rcpt' ? [] : undefined),
    });
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['nr@local.test'], message });
    assert.match(r.final ?? '', /^250 /);
    assert.equal(ofType(milters[0]?.sessions[0], 'header').length, 3);
  });

  test('RSET after MAIL sends ABORT; QUIT closes the milter session', async () => {
    const { d, milters } = await setup({});
    const c = await SmtpChat.connect(d.port);
    await c.read(1);
    await c.ask('EHLO c.test\r\n');
    await c.ask('MAIL FROM:<a@sender.example>\r\n');
    await c.ask('RSET\r\n');
    await c.ask('QUIT\r\n');
    c.close();
    await waitFor(() => (milters[0]?.sessions[0] ?? []).some((x) => x.type === 'quit'), 'QUIT to the milter');
    const types = (milters[0]?.sessions[0] ?? []).filter((x) => x.type !== 'macro').map((x) => x.type);
    assert.deepEqual(types, ['optneg', 'connect', 'helo', 'mail', 'abort', 'quit']);
  });
});
