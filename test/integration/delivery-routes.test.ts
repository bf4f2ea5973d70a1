// Per-route client policy end to end, daemon → scriptable sink: require_tls (deferred without
// STARTTLS, delivered over TLS with it), verify_tls against the sink's self-signed certificate,
// AUTH per route (right credentials delivered, wrong ones deferred and never bounced), SMTPUTF8
// (a UTF-8 address to a peer without it fails 5.6.7 and bounces) and SIZE (a message larger than
// the peer's SIZE fails 552 5.3.4 before MAIL and bounces).
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { SmtpSink, type SinkOptions } from '../support/sink.js';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';
import { startRelayDaemon, type TestDaemon } from '../support/daemon.js';
import { waitFor } from '../support/wait.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function sinkFor(opts: SinkOptions = {}): Promise<SmtpSink> {
  const s = await SmtpSink.start(opts);
  cleanups.push(() => s.close());
  return s;
}

/** A daemon routing dst.test to `sink` with the given extra route keys, and bounces for src.test
 *  to `bounces`. One attempt only: retries are an hour away. */
async function daemon(sink: SmtpSink, routeKeys: string, bounces?: SmtpSink): Promise<TestDaemon> {
  let toml = `[queue]\nretry = ["1h"]\n[[route]]\ndomain = "dst.test"\nhost = "127.0.0.1:${sink.port}"\n${routeKeys}\n`;
  if (bounces) toml += `[[route]]\ndomain = "src.test"\nhost = "127.0.0.1:${bounces.port}"\n`;
  const d = await startRelayDaemon(toml);
  cleanups.push(() => d.stop());
  return d;
}

const reports = (sink: SmtpSink) => sink.transactions.filter((t) => t.sender === '');

/** Waits for the first outcome of `rcpt` and returns it. */
async function firstOutcome(d: TestDaemon, rcpt: string) {
  await waitFor(() => d.outcomes(rcpt).length > 0, `an outcome for ${rcpt}`, 5000);
  return d.outcomes(rcpt)[0]!;
}

describe('require_tls per route', () => {
  test('require_tls to a sink without STARTTLS defers the recipient and sends nothing in clear', async () => {
    const sink = await sinkFor({ starttls: false });
    const d = await daemon(sink, 'require_tls = true');
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await firstOutcome(d, 'u@dst.test');
    assert.equal(o.msg, 'deferred');
    assert.match(JSON.stringify(o.fields), /STARTTLS/);
    assert.equal(sink.transactions.length, 0);
    assert.ok(!sink.commands.some((c) => /^MAIL/i.test(c)), 'no MAIL was sent in clear');
    assert.equal(d.liveMessages(), 1, 'the message stays queued for a retry');
  });

  test('require_tls to a sink offering STARTTLS delivers the message under TLS', async () => {
    const sink = await sinkFor({ starttls: true });
    const d = await daemon(sink, 'require_tls = true');
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 5000);
    assert.equal(d.outcomes('u@dst.test')[0]!.msg, 'delivered');
    assert.equal(sink.transactions.length, 1);
    assert.equal(sink.transactions[0]!.tls, true);
    assert.ok(sink.commands.includes('STARTTLS'));
  });
});

describe('verify_tls per route', () => {
  test("verify_tls = true against the sink's self-signed certificate defers (certificate not trusted)", async () => {
    const sink = await sinkFor({ starttls: true });
    const d = await daemon(sink, 'verify_tls = true');
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await firstOutcome(d, 'u@dst.test');
    assert.equal(o.msg, 'deferred');
    assert.match(JSON.stringify(o.fields), /certificate/i);
    assert.equal(sink.transactions.length, 0, 'not delivered, not even in clear');
    assert.equal(d.liveMessages(), 1);
  });

  test('verify_tls = true to a sink without STARTTLS defers rather than deliver unverified in clear', async () => {
    const sink = await sinkFor({ starttls: false });
    const d = await daemon(sink, 'verify_tls = true');
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await firstOutcome(d, 'u@dst.test')).msg, 'deferred');
    assert.equal(sink.transactions.length, 0);
  });

  test('verify_tls = false accepts the self-signed certificate and delivers over TLS', async () => {
    const sink = await sinkFor({ starttls: true });
    const d = await daemon(sink, 'verify_tls = false');
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 5000);
    assert.equal(sink.transactions.length, 1);
    assert.equal(sink.transactions[0]!.tls, true);
  });
});

describe('AUTH per route', () => {
  const auth = { user: 'relay-user', pass: 's3cret pass' };

  test('the route credentials authenticate to a sink that requires AUTH and the message is delivered', async () => {
    const sink = await sinkFor({ auth, requireAuth: true });
    const d = await daemon(sink, `auth_user = "${auth.user}"\nauth_password = "${auth.pass}"`);
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 5000);
    assert.equal(d.outcomes('u@dst.test')[0]!.msg, 'delivered');
    assert.equal(sink.transactions.length, 1);
    assert.equal(sink.transactions[0]!.authUser, auth.user);
    assert.ok(sink.commands.some((c) => /^AUTH /i.test(c)));
  });

  test('wrong route credentials defer the recipient (AUTH failures are transient), never bounce', async () => {
    const sink = await sinkFor({ auth, requireAuth: true });
    const bounces = await sinkFor();
    const d = await daemon(sink, `auth_user = "${auth.user}"\nauth_password = "wrong"`, bounces);
    await sendMail(d.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await firstOutcome(d, 'u@dst.test');
    assert.equal(o.msg, 'deferred');
    assert.ok(
      sink.commands.some((c) => /^AUTH /i.test(c)),
      'AUTH was attempted',
    );
    assert.ok(!sink.commands.some((c) => /^MAIL/i.test(c)), 'no MAIL after failed AUTH');
    assert.equal(sink.transactions.length, 0);
    assert.equal(d.liveMessages(), 1, 'still queued');
    assert.equal(reports(bounces).length, 0, 'no bounce');
    assert.ok(!d.outcomes().some((l) => l.msg === 'failed'));
  });
});

describe('SMTPUTF8', () => {
  test('a UTF-8 recipient relayed to a sink without SMTPUTF8 fails with 5.6.7 and bounces to the sender', async () => {
    const sink = await sinkFor({ smtputf8: false });
    const bounces = await sinkFor({ smtputf8: true });
    const d = await daemon(sink, '', bounces);
    await sendMail(d.port, { from: 'a@src.test', to: ['jörg@dst.test'] });
    await waitFor(() => reports(bounces).length === 1 && d.settled(), 'the bounce', 5000);
    const o = d.outcomes('jörg@dst.test')[0]!;
    assert.equal(o.msg, 'failed');
    assert.equal(o.fields.code, 553);
    assert.match(String(o.fields.text), /SMTPUTF8/);
    assert.ok(!sink.commands.some((c) => /^MAIL/i.test(c)), 'nothing was sent to the sink');
    const bounce = reports(bounces)[0]!;
    assert.deepEqual(bounce.recipients, ['a@src.test']);
    const r = parseDsn(bounce.data).recipients[0]!;
    assert.equal(r.action, 'failed');
    assert.equal(r.status, '5.6.7');
  });

  test('a UTF-8 sender relayed to a sink without SMTPUTF8 fails with 5.6.7 and bounces to that sender', async () => {
    const sink = await sinkFor({ smtputf8: false });
    const bounces = await sinkFor({ smtputf8: true });
    const d = await daemon(sink, '', bounces);
    await sendMail(d.port, { from: 'zoë@src.test', to: ['u@dst.test'] });
    await waitFor(() => reports(bounces).length === 1 && d.settled(), 'the bounce', 5000);
    assert.equal(d.outcomes('u@dst.test')[0]!.msg, 'failed');
    const bounce = reports(bounces)[0]!;
    assert.deepEqual(bounce.recipients, ['zoë@src.test']);
    assert.ok(bounce.mailParams.includes('SMTPUTF8'), 'the bounce to a UTF-8 address asks for SMTPUTF8');
    assert.equal(parseDsn(bounce.data).recipients[0]!.status, '5.6.7');
  });

  test('a UTF-8 recipient relayed to a sink offering SMTPUTF8 is delivered with the SMTPUTF8 parameter', async () => {
    const sink = await sinkFor({ smtputf8: true });
    const d = await daemon(sink, '');
    await sendMail(d.port, { from: 'a@src.test', to: ['jörg@dst.test'] });
    await waitFor(() => d.settled(), 'delivery', 5000);
    assert.equal(d.outcomes('jörg@dst.test')[0]!.msg, 'delivered');
    assert.equal(sink.transactions.length, 1);
    assert.deepEqual(sink.transactions[0]!.recipients, ['jörg@dst.test']);
    assert.ok(sink.transactions[0]!.mailParams.includes('SMTPUTF8'));
  });
});

describe('SIZE', () => {
  test('a message larger than the sink SIZE fails with 552 5.3.4 before MAIL and bounces', async () => {
    const sink = await sinkFor({ size: 500 });
    const bounces = await sinkFor();
    const d = await daemon(sink, '', bounces);
    await sendMail(d.port, {
      from: 'a@src.test',
      to: ['u@dst.test'],
      body: `${'x'.repeat(70)}\r\n`.repeat(20),
    });
    await waitFor(() => reports(bounces).length === 1 && d.settled(), 'the bounce', 5000);
    const o = d.outcomes('u@dst.test')[0]!;
    assert.equal(o.msg, 'failed');
    assert.equal(o.fields.code, 552);
    assert.match(String(o.fields.text), /exceeds size limit 500/);
    assert.ok(
      sink.commands.some((c) => /^EHLO/i.test(c)),
      'the sink was reached',
    );
    assert.ok(!sink.commands.some((c) => /^MAIL/i.test(c)), 'failed before MAIL');
    assert.equal(sink.transactions.length, 0);
    const r = parseDsn(reports(bounces)[0]!.data).recipients[0]!;
    assert.equal(r.action, 'failed');
    assert.equal(r.status, '5.3.4');
    assert.match(r['diagnostic-code'] ?? '', /552/);
  });
});
