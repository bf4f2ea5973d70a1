// The milter client's protocol corners against a scripted filter (src/milter/testkit.ts) and a
// whole in-process daemon: refusals at each SMTP stage landing on the right command, several
// milters in order, body replacement, macro lists (SMFIR_SETSYMLIST), no-reply flags, ABORT
// after RSET. The real filters' behaviour is in test/interop/milter-*.test.ts.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SMFIM, SMFIP, type MtaCommand } from '../../src/milter/protocol.js';
import { SmtpChat, startTestDaemon, type TestDaemon, waitFor, waitForMaildir } from '../support/daemon.js';
import { sendMessage } from '../support/mail.js';
import { type FakeMilter, type FakeMilterScript, startFakeMilter } from '../support/fake-milter.js';

const message = 'From: a@sender.example\r\nSubject: original\r\nX-Old: yes\r\n\r\noriginal body\r\n';

const started: { stop(): Promise<void> }[] = [];
after(async () => {
  for (const s of started.reverse()) await s.stop();
});

async function setup(...scripts: FakeMilterScript[]): Promise<{ d: TestDaemon; milters: FakeMilter[] }> {
  const milters: FakeMilter[] = [];
  for (const s of scripts) {
    const m = await startFakeMilter(s);
    milters.push(m);
    started.push({ stop: () => m.close() });
  }
  const d = await startTestDaemon({
    toml: `
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
