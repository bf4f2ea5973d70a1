// Delivery status notifications end to end: a logmta relays to an SmtpSink, and its reports
// (bounces, delay warnings, success notices) are themselves relayed to the same sink, where the
// test reads them. Covers NOTIFY (SUCCESS, NEVER, DELAY), RET (HDRS, FULL), max_age expiry, and
// the two loops an MTA must never make: a report to <> and a report about a report.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { type SinkOptions, SmtpSink } from '../support/sink.js';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';
import { sleep, waitFor } from '../support/wait.js';
import { startRelayDaemon, type TestDaemon } from '../support/daemon.js';

const opened: Array<SmtpSink | TestDaemon> = [];

async function setup(sinkOpts: SinkOptions = {}, queue = ''): Promise<{ sink: SmtpSink; d: TestDaemon }> {
  const sink = await SmtpSink.start(sinkOpts);
  opened.push(sink);
  const d = await startRelayDaemon(
    `[queue]\nretry = ["1s"]\n${queue}\n[[route]]\ndomain = "*"\nhost = "127.0.0.1:${sink.port}"\n`,
  );
  opened.push(d);
  return { sink, d };
}

afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await ('stop' in o ? o.stop() : o.close());
});

const reports = (sink: SmtpSink) => sink.transactions.filter((t) => t.sender === '');
const refuse = (who: string, line: string) => (addr: string) => (addr === who ? line : undefined);

describe('success notices (NOTIFY=SUCCESS)', () => {
  test('a next hop without DSN gets the mail, and the sender a "relayed" notice', async () => {
    const { sink, d } = await setup({ dsn: false });
    await sendMail(d.port, { from: 's@src.test', to: [{ address: 'r@dst.test', notify: ['SUCCESS'] }] });
    await waitFor(() => reports(sink).length === 1 && d.settled(), 'the notice', 5000);
    const dsn = parseDsn(reports(sink)[0]!.data);
    assert.equal(dsn.recipients[0]?.action, 'relayed');
    assert.equal(dsn.recipients[0]?.status, '2.0.0');
    assert.deepEqual(reports(sink)[0]!.recipients, ['s@src.test']);
  });

  test('a next hop with DSN is handed NOTIFY=SUCCESS and reports itself: no notice from us', async () => {
    const { sink, d } = await setup({ dsn: true });
    await sendMail(d.port, {
      from: 's@src.test',
      to: [{ address: 'r@dst.test', notify: ['SUCCESS', 'FAILURE'] }],
    });
    await waitFor(() => d.settled(), 'delivery', 5000);
    await sleep(200);
    assert.equal(sink.transactions.length, 1);
    assert.deepEqual(sink.transactions[0]!.rcptParams[0], ['NOTIFY=SUCCESS,FAILURE']);
    assert.equal(reports(sink).length, 0);
  });
});

describe('failure reports', () => {
  test('NOTIFY=NEVER: a failed recipient produces no report', async () => {
    const { sink, d } = await setup({ rcptReply: refuse('r@dst.test', '550 5.1.1 unknown') });
    await sendMail(d.port, { from: 's@src.test', to: [{ address: 'r@dst.test', notify: ['NEVER'] }] });
    await waitFor(() => d.outcomes('r@dst.test').length === 1 && d.settled(), 'the failure', 5000);
    await sleep(200);
    assert.equal(d.outcomes('r@dst.test')[0]!.msg, 'failed');
    assert.equal(sink.transactions.length, 0);
  });

  test('NOTIFY=SUCCESS alone: a failure is not reported either', async () => {
    const { sink, d } = await setup({ rcptReply: refuse('r@dst.test', '550 5.1.1 unknown') });
    await sendMail(d.port, { from: 's@src.test', to: [{ address: 'r@dst.test', notify: ['SUCCESS'] }] });
    await waitFor(() => d.settled(), 'the failure', 5000);
    await sleep(200);
    assert.equal(reports(sink).length, 0);
  });

  test('RET=HDRS returns only the headers; RET=FULL the whole message', async () => {
    const { sink, d } = await setup({ rcptReply: refuse('r@dst.test', '550 5.1.1 unknown') });
    await sendMail(d.port, {
      from: 'h@src.test',
      to: ['r@dst.test'],
      ret: 'HDRS',
      body: 'SECRET-BODY-1\r\n',
    });
    await sendMail(d.port, {
      from: 'f@src.test',
      to: ['r@dst.test'],
      ret: 'FULL',
      body: 'SECRET-BODY-2\r\n',
    });
    await waitFor(() => reports(sink).length === 2 && d.settled(), 'two bounces', 5000);
    const hdrs = reports(sink)
      .find((t) => t.recipients[0] === 'h@src.test')!
      .data.toString();
    const full = reports(sink)
      .find((t) => t.recipients[0] === 'f@src.test')!
      .data.toString();
    assert.match(hdrs, /Content-Type: text\/rfc822-headers/);
    assert.doesNotMatch(hdrs, /SECRET-BODY-1/);
    assert.match(hdrs, /From: <h@src\.test>/);
    assert.match(full, /Content-Type: message\/rfc822/);
    assert.match(full, /SECRET-BODY-2/);
  });

  test('never a report to the null sender', async () => {
    const { sink, d } = await setup({ rcptReply: refuse('r@dst.test', '550 5.1.1 unknown') });
    await sendMail(d.port, { from: '', to: ['r@dst.test'] });
    await waitFor(() => d.outcomes('r@dst.test').length === 1 && d.settled(), 'the failure', 5000);
    await sleep(300);
    assert.equal(sink.transactions.length, 0);
  });

  test('never a report about a report: a bounce that bounces is dropped', async () => {
    // The recipient fails, and so does the bounce to the sender.
    const { sink, d } = await setup({
      rcptReply: (a) => (a === 'r@dst.test' || a === 'gone@src.test' ? '550 5.1.1 unknown' : undefined),
    });
    await sendMail(d.port, { from: 'gone@src.test', to: ['r@dst.test'] });
    await waitFor(() => d.outcomes('gone@src.test').length === 1 && d.settled(), 'the bounce to fail', 5000);
    await sleep(300);
    assert.equal(d.outcomes('gone@src.test')[0]!.msg, 'failed');
    assert.equal(
      d.outcomes().filter((o) => o.msg === 'failed').length,
      2,
      'the message and its bounce, nothing more',
    );
    assert.equal(sink.transactions.length, 0);
    assert.equal(
      sink.commands.filter((c) => c === 'MAIL FROM:<> SIZE=' || c.startsWith('MAIL FROM:<>')).length,
      1,
    );
  });
});

describe('delay warnings and expiry', () => {
  test('NOTIFY=DELAY gets one delay warning after delay_warning, then the mail is delivered', async () => {
    const { sink, d } = await setup(
      { rcptReply: refuse('slow@dst.test', '451 4.3.0 try later') },
      'delay_warning = "1s"\nmax_age = "1h"',
    );
    await sendMail(d.port, {
      from: 's@src.test',
      to: [{ address: 'slow@dst.test', notify: ['DELAY', 'FAILURE'] }],
    });
    await waitFor(() => reports(sink).length === 1, 'the warning', 8000);
    const dsn = parseDsn(reports(sink)[0]!.data);
    assert.equal(dsn.recipients[0]?.action, 'delayed');
    assert.equal(dsn.recipients[0]?.status, '4.3.0');
    assert.ok(dsn.recipients[0]?.['will-retry-until'], 'Will-Retry-Until is given');
    assert.match(dsn.recipients[0]?.['diagnostic-code'] ?? '', /451 4\.3\.0 try later/);
    // Only once, even though it keeps being deferred.
    await waitFor(() => d.outcomes('slow@dst.test').length >= 4, 'more attempts', 8000);
    assert.equal(reports(sink).length, 1);
    delete sink.opts.rcptReply;
    await waitFor(() => d.settled(), 'final delivery', 5000);
    assert.equal(sink.transactions.filter((t) => t.recipients.includes('slow@dst.test')).length, 1);
    assert.equal(reports(sink).length, 1);
  });

  test('without NOTIFY=DELAY no warning is sent', async () => {
    const { sink, d } = await setup(
      { rcptReply: refuse('slow@dst.test', '451 4.3.0 try later') },
      'delay_warning = "1s"\nmax_age = "1h"',
    );
    await sendMail(d.port, { from: 's@src.test', to: ['slow@dst.test'] });
    await waitFor(() => d.outcomes('slow@dst.test').length >= 3, 'three attempts', 8000);
    assert.equal(reports(sink).length, 0);
  });

  test('a recipient still deferred at max_age is bounced with the last error', async () => {
    const { sink, d } = await setup(
      { rcptReply: refuse('never@dst.test', '450 4.2.1 mailbox unavailable') },
      'max_age = "2500ms"',
    );
    await sendMail(d.port, { from: 's@src.test', to: ['never@dst.test'] });
    await waitFor(() => reports(sink).length === 1 && d.settled(), 'the expiry bounce', 10000);
    assert.ok(d.log.some((l) => l.msg === 'expired' && l.fields.rcpt === 'never@dst.test'));
    const dsn = parseDsn(reports(sink)[0]!.data);
    const r = dsn.recipients[0]!;
    assert.equal(r.action, 'failed');
    assert.equal(r.status, '4.4.7');
    assert.match(r['diagnostic-code'] ?? '', /^smtp; 450 delivery time expired: mailbox unavailable/);
    assert.equal(sink.transactions.filter((t) => t.recipients.includes('never@dst.test')).length, 0);
  });
});

describe('reports reveal no local paths', () => {
  const localSetup = async (local: string, queue = '') => {
    const sink = await SmtpSink.start({});
    opened.push(sink);
    const d = await startRelayDaemon(
      `[queue]\nretry = ["1s"]\n${queue}\n[[local]]\n${local}\n` +
        `[[route]]\ndomain = "*"\nhost = "127.0.0.1:${sink.port}"\n`,
    );
    opened.push(d);
    return { sink, d };
  };
  const noPath = (data: Buffer, dir: string) => {
    const text = data.toString('utf8');
    assert.ok(!text.includes(dir), `the report names the data directory ${dir}:\n${text}`);
    assert.doesNotMatch(text, /(^|[\s'"(])\/(tmp|var|proc|home)\//m, 'the report names a file system path');
  };

  test('a success notice for a local delivery says "delivered", not where the mailbox file is', async () => {
    const { sink, d } = await localSetup('domain = "here.test"');
    await sendMail(d.port, { from: 's@src.test', to: [{ address: 'alice@here.test', notify: ['SUCCESS'] }] });
    await waitFor(() => reports(sink).length === 1 && d.settled(), 'the notice', 5000);
    const data = reports(sink)[0]!.data;
    const r = parseDsn(data).recipients[0]!;
    assert.equal(r.action, 'delivered');
    assert.equal(r['remote-mta'], undefined);
    assert.match(r['diagnostic-code'] ?? '', /^smtp; 250 2\.0\.0 delivered to maildir$/);
    noPath(data, d.dir);
    // The operator still finds the mailbox in the log.
    assert.ok(d.log.some((l) => l.msg === 'delivery attempt' && String(l.fields.detail).includes(d.dir)));
  });

  test('a bounce for a local mailbox that cannot be created names the error code, not the path', async () => {
    const { sink, d } = await localSetup('domain = "here.test"');
    mkdirSync(join(d.dataDir, 'mail'), { recursive: true });
    writeFileSync(join(d.dataDir, 'mail', 'bob'), 'not a directory');
    await sendMail(d.port, { from: 's@src.test', to: ['bob@here.test'] });
    await waitFor(() => reports(sink).length === 1 && d.settled(), 'the bounce', 5000);
    const data = reports(sink)[0]!.data;
    const r = parseDsn(data).recipients[0]!;
    assert.equal(r.action, 'failed');
    assert.match(r['diagnostic-code'] ?? '', /ENOTDIR/);
    noPath(data, d.dir);
  });

  test('a delay warning for a local mailbox that fails for now names no path', async () => {
    const { sink, d } = await localSetup(
      // A name longer than NAME_MAX: mkdir fails with ENAMETOOLONG, a transient local error.
      `domain = "here.test"\nmaildir = "/tmp/logmta-no-such-${'x'.repeat(300)}/{user}"`,
      'delay_warning = "1s"\nmax_age = "1h"',
    );
    await sendMail(d.port, {
      from: 's@src.test',
      to: [{ address: 'carol@here.test', notify: ['DELAY', 'FAILURE'] }],
    });
    await waitFor(() => reports(sink).length === 1, 'the warning', 8000);
    const data = reports(sink)[0]!.data;
    assert.equal(parseDsn(data).recipients[0]?.action, 'delayed');
    noPath(data, d.dir);
    assert.doesNotMatch(data.toString(), /logmta-no-such/);
  });
});
