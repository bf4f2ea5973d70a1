// What the content of a message needs from the next hop, end to end through a logmta that relays
// to an SmtpSink: 8-bit MIME to a hop without 8BITMIME arrives converted to valid 7-bit MIME
// (checked by Python's email package), or bounces with 5.6.3 where it cannot be converted; a
// message sent with Python's smtplib under SMTPUTF8 with a raw UTF-8 Subject and display name is
// never relayed raw to a hop without SMTPUTF8 (its sender gets a 5.6.7 bounce), while one whose
// header fields are ASCII still goes there.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { SmtpClient } from '../../src/smtp/client/index.js';
import { cramMd5Response } from '../../src/smtp/client/auth.js';
import {
  hasTool,
  runTool,
  startTestDaemon as startServe,
  startRelayDaemon,
  type TestDaemon,
} from '../support/daemon.js';
import { hasPythonEmail, pythonSameMime } from '../support/mime-check.js';
import { type SinkOptions, SmtpSink } from '../support/sink.js';
import { parseDsn } from '../support/dsn.js';
import { waitFor } from '../support/wait.js';

const opened: Array<SmtpSink | TestDaemon> = [];
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await ('stop' in o ? o.stop() : o.close());
});

async function setup(sinkOpts: SinkOptions): Promise<{ sink: SmtpSink; d: TestDaemon }> {
  const sink = await SmtpSink.start(sinkOpts);
  opened.push(sink);
  const d = await startRelayDaemon(
    `[queue]\nretry = ["1s"]\n[[route]]\ndomain = "*"\nhost = "127.0.0.1:${sink.port}"\n`,
  );
  opened.push(d);
  return { sink, d };
}

/** Sends `data` as it is with BODY=8BITMIME (and SMTPUTF8 if asked) to the daemon. */
async function inject(
  port: number,
  data: Buffer,
  o: { smtputf8?: boolean; to?: string } = {},
): Promise<void> {
  const c = await SmtpClient.connect('127.0.0.1', port, { name: 'injector.test', tls: { mode: 'none' } });
  try {
    const r = await c.sendMessage({
      sender: 's@src.test',
      recipients: [{ address: o.to ?? 'r@dst.test' }],
      size: data.length,
      data: [data],
      body8bit: true,
      ...(o.smtputf8 && { smtputf8: true }),
    });
    assert.equal(r.recipients[0]?.status, 'delivered', r.recipients[0]?.text);
  } finally {
    await c.quit();
  }
}

const MULTIPART = Buffer.from(
  [
    'From: Jörg <s@src.test>',
    'To: <r@dst.test>',
    'Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="outer"',
    '',
    '--outer',
    'Content-Type: multipart/alternative; boundary="inner"',
    '',
    '--inner',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    'Grüße aus Köln — 8-bit text, trailing space ',
    '.a line starting with a dot = and an equals sign',
    '--inner',
    'Content-Type: text/html; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    '',
    `<p>${'ü'.repeat(400)}</p>`,
    '--inner--',
    '--outer',
    'Content-Type: message/rfc822',
    '',
    'From: <x@src.test>',
    'Subject: forwarded',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'innen: Straße',
    '--outer--',
    '',
  ]
    .join('\r\n')
    .replace('From: Jörg', 'From: =?utf-8?q?J=C3=B6rg?='),
  'utf8',
);

const received = (sink: SmtpSink) => sink.transactions.filter((t) => t.sender !== '');
const reports = (sink: SmtpSink) => sink.transactions.filter((t) => t.sender === '');

describe('8-bit mail and hops without 8BITMIME (RFC 6152)', () => {
  test('8-bit MIME relayed to a hop without 8BITMIME arrives as 7-bit MIME with the same content', async (t) => {
    const { sink, d } = await setup({ eightBitMime: false });
    await inject(d.port, MULTIPART);
    await waitFor(() => received(sink).length === 1 && d.settled(), 'the delivery', 5000);
    const tx = received(sink)[0]!;
    assert.ok(!tx.mailParams.some((p) => p.startsWith('BODY=')), `no BODY= to this hop: ${tx.mailParams}`);
    const out = tx.data;
    assert.ok(
      out.every((b) => b < 128),
      'only 7-bit bytes went to the hop',
    );
    // Our Received: field comes first; the rest of the header section is as sent.
    const body = out.subarray(out.indexOf('From: '));
    assert.ok(body.toString('latin1').startsWith(MULTIPART.toString('latin1').split('Content-Type')[0]!));
    assert.match(body.toString(), /Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe/);
    if (!hasPythonEmail()) {
      t.diagnostic('python3 missing: the comparison with a real parser was skipped');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'logmta-8bit-'));
    try {
      writeFileSync(join(dir, '0.in'), MULTIPART);
      writeFileSync(join(dir, '0.out'), body);
      assert.equal(pythonSameMime(dir, 1), 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a hop that offers 8BITMIME gets the message unchanged with BODY=8BITMIME', async () => {
    const { sink, d } = await setup({});
    await inject(d.port, MULTIPART);
    await waitFor(() => received(sink).length === 1 && d.settled(), 'the delivery', 5000);
    const tx = received(sink)[0]!;
    assert.ok(tx.mailParams.includes('BODY=8BITMIME'));
    assert.ok(tx.data.subarray(tx.data.indexOf('From: ')).equals(MULTIPART));
  });

  test('8-bit content that has no 7-bit form bounces with 5.6.3 and is not sent', async () => {
    const { sink, d } = await setup({ eightBitMime: false });
    const partial = Buffer.from(
      'From: <s@src.test>\r\nMIME-Version: 1.0\r\nContent-Type: message/partial; id="a@b"; number=1\r\n\r\n' +
        'Subject: part\r\n\r\nStraße\r\n',
      'utf8',
    );
    await inject(d.port, partial);
    await waitFor(() => reports(sink).length === 1 && d.settled(), 'the bounce', 5000);
    assert.equal(received(sink).length, 0);
    const r = parseDsn(reports(sink)[0]!.data).recipients[0]!;
    assert.equal(r.action, 'failed');
    assert.equal(r.status, '5.6.3');
    assert.match(r['diagnostic-code'] ?? '', /message\/partial part holds 8-bit data/);
    // The report returns the header section only: the body would not pass this hop either.
    assert.match(parseDsn(reports(sink)[0]!.data).text, /Content-Type: text\/rfc822-headers/);
  });
});

const skipPy = hasTool('python3') ? false : 'python3 is not installed';

/** Sends with Python's smtplib: raw UTF-8 Subject and display name, SMTPUTF8 in MAIL. */
async function pythonSend(port: number, subject: string, name: string): Promise<void> {
  const script = `
import smtplib, sys
port, subject, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
msg = (f'From: {name} <s@src.test>\\r\\nTo: <r@dst.test>\\r\\nSubject: {subject}\\r\\n'
       'MIME-Version: 1.0\\r\\nContent-Type: text/plain; charset=utf-8\\r\\n\\r\\nHallo.\\r\\n').encode('utf-8')
with smtplib.SMTP('127.0.0.1', port) as s:
    s.ehlo('py.test')
    s.sendmail('s@src.test', ['r@dst.test'], msg, mail_options=['SMTPUTF8', 'BODY=8BITMIME'])
print('sent')
`;
  const r = await runTool('python3', ['-c', script, String(port), subject, name]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
}

describe('UTF-8 header fields and hops without SMTPUTF8 (RFC 6531)', { skip: skipPy }, () => {
  test('a message with a raw UTF-8 Subject and display name is bounced (5.6.7), never sent raw to a hop without SMTPUTF8', async () => {
    const { sink, d } = await setup({ smtputf8: false });
    await pythonSend(d.port, 'Grüße aus Köln', 'Jörg Müller');
    await waitFor(() => reports(sink).length === 1 && d.settled(), 'the bounce', 5000);
    assert.equal(received(sink).length, 0, 'the message went to a hop without SMTPUTF8');
    const dsn = reports(sink)[0]!;
    const r = parseDsn(dsn.data).recipients[0]!;
    assert.equal(r.action, 'failed');
    assert.equal(r.status, '5.6.7');
    assert.match(r['diagnostic-code'] ?? '', /SMTPUTF8 is required \(UTF-8 header fields\)/);
    // The bounce itself carries the UTF-8 header fields in its body only: it goes without SMTPUTF8.
    assert.ok(!dsn.mailParams.includes('SMTPUTF8'));
  });

  test('the same message goes to a hop that offers SMTPUTF8, with SMTPUTF8 and its header fields as sent', async () => {
    const { sink, d } = await setup({ smtputf8: true });
    await pythonSend(d.port, 'Grüße aus Köln', 'Jörg Müller');
    await waitFor(() => received(sink).length === 1 && d.settled(), 'the delivery', 5000);
    const tx = received(sink)[0]!;
    assert.ok(tx.mailParams.includes('SMTPUTF8'));
    assert.match(tx.data.toString('utf8'), /^From: Jörg Müller <s@src\.test>\r\n/m);
    assert.match(tx.data.toString('utf8'), /^Subject: Grüße aus Köln\r\n/m);
  });

  test('a message sent with SMTPUTF8 whose header fields are ASCII still goes to a hop without it', async () => {
    const { sink, d } = await setup({ smtputf8: false });
    await pythonSend(d.port, 'plain subject', 'Plain Name');
    await waitFor(() => received(sink).length === 1 && d.settled(), 'the delivery', 5000);
    assert.equal(reports(sink).length, 0);
    assert.ok(!received(sink)[0]!.mailParams.includes('SMTPUTF8'));
  });
});

/**
 * A minimal ODMR customer on a raw socket: AUTH CRAM-MD5, ATRN, then a plain SMTP server that
 * offers no extension but ENHANCEDSTATUSCODES (no 8BITMIME), recording each MAIL line and message.
 */
async function atrnCustomer(port: number, user: string, pass: string, domain: string) {
  const sock = net.connect(port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  let wake: (() => void) | undefined;
  let closed = false;
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    wake?.();
  });
  sock.on('error', () => {}); // seen as the close that follows
  sock.on('close', () => {
    closed = true;
    wake?.();
  });
  const until = async (end: string): Promise<string> => {
    for (;;) {
      const i = buf.indexOf(end);
      if (i >= 0) {
        const s = buf.subarray(0, i + end.length).toString('latin1');
        buf = buf.subarray(i + end.length);
        return s;
      }
      if (closed) throw new Error('customer: connection closed');
      await new Promise<void>((r) => (wake = r));
    }
  };
  const reply = async (): Promise<string> => {
    for (;;) {
      const l = await until('\r\n');
      if (/^\d{3} /.test(l)) return l;
    }
  };
  await reply();
  sock.write('EHLO customer.test\r\n');
  await reply();
  sock.write('AUTH CRAM-MD5\r\n');
  const challenge = (await reply()).slice(4).trim();
  sock.write(`${cramMd5Response(user, pass, challenge)}\r\n`);
  assert.match(await reply(), /^235 /);
  sock.write(`ATRN ${domain}\r\n`);
  assert.match(await reply(), /^250 /);
  sock.write('220 customer.test ESMTP\r\n');
  const mail: string[] = [];
  const messages: Buffer[] = [];
  for (;;) {
    const l = (await until('\r\n')).trimEnd();
    const verb = l.split(/[ :]/)[0]!.toUpperCase();
    if (verb === 'EHLO') sock.write('250-customer.test\r\n250 ENHANCEDSTATUSCODES\r\n');
    else if (verb === 'MAIL') {
      mail.push(l);
      sock.write('250 2.1.0 ok\r\n');
    } else if (verb === 'RCPT' || verb === 'RSET') sock.write('250 2.1.5 ok\r\n');
    else if (verb === 'DATA') {
      sock.write('354 go on\r\n');
      const d = await until('\r\n.\r\n');
      messages.push(Buffer.from(d.slice(0, -3).replace(/^\.\./gm, '.'), 'latin1'));
      sock.write('250 2.0.0 queued\r\n');
    } else if (verb === 'QUIT') {
      sock.end('221 2.0.0 bye\r\n');
      break;
    } else sock.write('502 5.5.2 no\r\n');
  }
  return { mail, messages };
}

describe('8-bit mail collected with ATRN', () => {
  test('an 8-bit message held for an ODMR customer without 8BITMIME is delivered to it as 7-bit MIME', async () => {
    const d = await startServe({
      toml: '[[odmr.account]]\nuser = "acme"\npassword = "pw"\ndomains = ["acme.example"]\n',
    });
    try {
      await inject(d.port, MULTIPART, { to: 'one@acme.example' });
      await waitFor(() => d.daemon.queues.heldCount('acme.example') === 1, 'the held message', 5000);
      const a = d.daemon.addresses.odmr[0] ?? '';
      const got = await atrnCustomer(Number(a.slice(a.lastIndexOf(':') + 1)), 'acme', 'pw', 'acme.example');
      assert.equal(got.messages.length, 1);
      assert.doesNotMatch(got.mail[0]!, /BODY=/);
      const m = got.messages[0]!;
      assert.ok(
        m.every((b) => b < 128),
        'only 7-bit bytes went to the customer',
      );
      assert.match(m.toString(), /Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe/);
      await waitFor(() => d.daemon.queues.heldCount('acme.example') === 0, 'the outcome', 5000);
    } finally {
      await d.stop();
    }
  });
});
