// LMTP delivery (RFC 2033) to a real Dovecot (Debian's dovecot-lmtpd), run by the test with a
// private configuration: mail for a [[local]] domain with `lmtp = ...` lands in the Dovecot
// mailboxes (read back with doveadm fetch), each recipient once; the per-recipient replies after
// DATA become per-recipient outcomes — an over-quota mailbox (552 5.2.2) or an unknown user
// (550 5.1.1) is bounced to the sender while the others are delivered, an over-quota 452 4.2.2 is
// retried; a Dovecot that is down at first gets the mail once it is up; one connection carries
// several messages; the envelope is pipelined (RFC 2920) to Dovecot, which offers PIPELINING.
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { maildirMessages, startTestDaemon, type TestDaemon, waitForMaildir } from '../support/daemon.js';
import { type Dovecot, dovecotMissing, startDovecot } from '../support/dovecot.js';
import { sendMessage } from '../support/mail.js';
import { freeTcpPort } from '../support/ports.js';
import { waitFor } from '../support/wait.js';

const skip = dovecotMissing();

/**
 * A TCP forwarder to Dovecot's LMTP port that holds Dovecot's replies back from the LHLO reply
 * on until the client has sent `envelope` more command lines (MAIL and its RCPTs): only a client
 * that pipelines the envelope gets past its MAIL. Records what the client sent and whether
 * Dovecot offered PIPELINING.
 */
async function holdingProxy(
  target: () => number,
  envelope: number,
): Promise<{
  port: number;
  sent: string[];
  offered: () => boolean;
  debug: () => string;
  close(): Promise<void>;
}> {
  const sockets = new Set<net.Socket>();
  const sent: string[] = [];
  let fromServer = '';
  const server = net.createServer((down) => {
    const up = net.connect(target(), '127.0.0.1');
    sockets.add(down).add(up);
    let lhloAnswered = false;
    let afterLhlo = 0;
    let released = false;
    let held: Buffer[] = [];
    let client = '';
    down.on('error', () => {}).on('close', () => up.destroy());
    up.on('error', () => {}).on('close', () => down.destroy());
    down.on('data', (b: Buffer) => {
      client += b.toString('latin1');
      for (let i = client.indexOf('\r\n'); i >= 0; i = client.indexOf('\r\n')) {
        const line = client.slice(0, i);
        client = client.slice(i + 2);
        sent.push(line);
        if (lhloAnswered && ++afterLhlo >= envelope) released = true;
      }
      up.write(b);
      if (released && held.length > 0) {
        for (const h of held) down.write(h);
        held = [];
      }
    });
    up.on('data', (b: Buffer) => {
      fromServer += b.toString('latin1');
      if (lhloAnswered && !released) {
        held.push(b);
        return;
      }
      down.write(b);
      // The LHLO reply is the first multi-line 250 ending in a "250 " line.
      if (/\r\n250 [^\r]*\r\n$/.test(fromServer) && fromServer.includes('250-')) lhloAnswered = true;
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    sent,
    offered: () => /250[- ]PIPELINING\r\n/.test(fromServer),
    debug: () => JSON.stringify({ sent, fromServer }),
    close: () =>
      new Promise<void>((r) => {
        for (const so of sockets) so.destroy();
        server.close(() => r());
      }),
  };
}

const message = (subject: string, body = 'Hello.') =>
  `From: sender@local.test\r\nTo: someone@box.test\r\nSubject: ${subject}\r\n` +
  `Message-ID: <${subject.replace(/\W/g, '')}@local.test>\r\n\r\n${body}\r\n`;

/** waitFor with a 15 s default; a listing can race a segment being unlinked under it: that is "not yet", not a failure. */
const until = (cond: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> =>
  waitFor(() => cond().catch(() => false), what, ms);

describe('LMTP delivery to Dovecot', { skip }, () => {
  let dovecot: Dovecot;
  let tempfailing: Dovecot | undefined;
  let laterPort = 0;
  let d: TestDaemon;
  let proxy: Awaited<ReturnType<typeof holdingProxy>>;
  const senderBox = () => join(d.dataDir, 'mail', 'sender');

  before(async () => {
    dovecot = await startDovecot({
      users: [{ name: 'alice' }, { name: 'bob' }, { name: 'full', quota: '*:storage=1K' }],
    });
    proxy = await holdingProxy(() => dovecot.port, 3);
    laterPort = await freeTcpPort();
    d = await startTestDaemon({
      toml: `
[queue]
retry = ["1s"]
[[local]]
domain = "local.test"
maildir = "mail/{user}"
[[local]]
domain = "box.test"
lmtp = "unix:${dovecot.socket}"
[[local]]
domain = "tcp.test"
lmtp = "127.0.0.1:${dovecot.port}"
[[local]]
domain = "later.test"
lmtp = "127.0.0.1:${laterPort}"
[[local]]
domain = "piped.test"
lmtp = "127.0.0.1:${proxy.port}"
`,
      // The dead-host cache would skip the restarted Dovecot for a minute.
      deps: { deadHostMs: 200 },
    });
  });
  after(async () => {
    await d?.stop();
    await proxy?.close();
    await dovecot?.stop();
    await tempfailing?.stop();
  });

  test('mail for two users lands once in each Dovecot mailbox (unix socket)', async () => {
    const r = await sendMessage(d.port, {
      from: 'sender@local.test',
      to: ['alice@box.test', 'bob@box.test'],
      message: message('to both'),
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    await until(async () => (await dovecot.fetch('bob')).length === 1, 'bob mailbox');
    const [a] = await dovecot.fetch('alice');
    assert.match(a ?? '', /^Return-Path: <sender@local\.test>\n/);
    assert.match(a ?? '', /\nReceived: from client\.test \(\[127\.0\.0\.1\]\)\n\tby mx\.test \(logmta\)/);
    assert.match(a ?? '', /\nSubject: to both\n/);
    assert.equal((await dovecot.fetch('alice')).length, 1, 'exactly once');
  });

  test('over TCP too; several messages reuse one LMTP connection', async () => {
    const before = { ...d.daemon.pool.stats };
    for (const n of [1, 2, 3]) {
      const r = await sendMessage(d.port, {
        from: 'sender@local.test',
        to: ['alice@tcp.test'],
        message: message(`tcp ${n}`),
      });
      assert.match(r.final ?? '', /^250 /);
      await until(async () => (await dovecot.fetch('alice')).length === 1 + n, `tcp message ${n}`);
    }
    const s = d.daemon.pool.stats;
    assert.equal(s.connections - before.connections, 1, 'one connection');
    assert.equal(s.reused - before.reused, 2, 'reused for the next two messages');
  });

  test('an over-quota mailbox is bounced (552 5.2.2) while the other recipient is delivered', async () => {
    const big = 'x'.repeat(76).concat('\r\n').repeat(60);
    const r = await sendMessage(d.port, {
      from: 'sender@local.test',
      to: ['full@box.test', 'bob@box.test'],
      message: message('too big for full', big),
    });
    assert.match(r.final ?? '', /^250 /);
    await until(async () => (await dovecot.fetch('bob')).length === 2, 'bob got it');
    const [bounce = ''] = await waitForMaildir(senderBox(), 1, 15_000);
    assert.match(bounce, /Final-Recipient: rfc822; ?full@box\.test/i);
    assert.match(bounce, /Status: 5\.2\.2/);
    assert.doesNotMatch(bounce, /Final-Recipient: rfc822; ?bob@box\.test/i);
    assert.equal((await dovecot.fetch('full')).length, 0);
  });

  test("an unknown user is bounced with Dovecot's 550 5.1.1", async () => {
    const r = await sendMessage(d.port, {
      from: 'sender@local.test',
      to: ['nobody@box.test'],
      message: message('unknown'),
    });
    assert.match(r.final ?? '', /^250 /);
    const bounces = await waitForMaildir(senderBox(), 2, 15_000);
    assert.match(bounces.join('\n'), /Final-Recipient: rfc822; ?nobody@box\.test[\s\S]*Status: 5\.1\.1/i);
  });

  test('a Dovecot that is down at first gets the mail once it is up', async () => {
    const r = await sendMessage(d.port, {
      from: 'sender@local.test',
      to: ['alice@later.test'],
      message: message('later'),
    });
    assert.match(r.final ?? '', /^250 /);
    await until(async () => {
      const m = await d.daemon.queues.listPieces({}, Date.now());
      return m.some((x) => x.pieces.some((p) => p.attempts >= 1 && p.laneKind === 'retry'));
    }, 'a deferred first attempt');
    tempfailing = await startDovecot({
      users: [{ name: 'alice' }, { name: 'full', quota: '*:storage=1K' }],
      quotaFullTempfail: true,
      port: laterPort,
    });
    const later = tempfailing;
    await until(async () => (await later.fetch('alice')).length === 1, 'delivery after the restart', 20_000);
  });

  test('an over-quota 452 4.2.2 (quota_full_tempfail) is retried, not bounced', async () => {
    const big = 'y'.repeat(76).concat('\r\n').repeat(60);
    const r = await sendMessage(d.port, {
      from: 'sender@local.test',
      to: ['full@later.test'],
      message: message('retry me', big),
    });
    assert.match(r.final ?? '', /^250 /);
    await until(async () => {
      const m = await d.daemon.queues.listPieces({}, Date.now());
      return m.some((x) => x.pieces.some((p) => p.attempts >= 2 && /452 4\.2\.2/.test(p.lastError ?? '')));
    }, 'two deferred attempts with 452 4.2.2');
    const bounces = maildirMessages(senderBox());
    assert.ok(!bounces.join('\n').includes('full@later.test'), 'no bounce for a temporary failure');
  });

  test('the envelope is pipelined to Dovecot: MAIL and both RCPTs go before any reply', async () => {
    const before = { alice: (await dovecot.fetch('alice')).length, bob: (await dovecot.fetch('bob')).length };
    const r = await sendMessage(d.port, {
      from: 'sender@local.test',
      to: ['alice@piped.test', 'bob@piped.test'],
      message: message('pipelined'),
    });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    // Dovecot's replies were held until the whole envelope had arrived: a client waiting for
    // each reply would never have sent its RCPTs, and nothing would arrive. (Dovecot offers
    // CHUNKING: the data goes by BDAT once the envelope's replies are in.)
    await until(
      async () =>
        (await dovecot.fetch('alice')).length === before.alice + 1 &&
        (await dovecot.fetch('bob')).length === before.bob + 1,
      'both mailboxes',
    ).catch((e) => {
      throw new Error(`${e}: ${proxy.debug()}`);
    });
    assert.ok(proxy.offered(), 'Dovecot offered PIPELINING');
    assert.deepEqual(
      proxy.sent.slice(1, 5).map((l) => l.split(/[ :]/)[0]),
      ['MAIL', 'RCPT', 'RCPT', 'BDAT'],
    );
  });
});
