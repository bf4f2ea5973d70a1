// MX fallback as mail to the Internet meets it, against a real `logmta serve` that asks a real
// DNS server (unbound on loopback) and connects to MX hosts on port 25, each at an address of
// its own in 127.0.0.0/8 (test/support/mx-hosts.ts). The best MX host is down, a tarpit, greets
// with 421, or refuses a recipient: what the recipient's hosts and the sender's bounce sink end
// up with (each message at the right host exactly once, the bounce at the sender's).
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';
import { type MxListener, mxDown, mxListener, mxSink, mxTarpit } from '../support/mx-hosts.js';
import { type SinkOptions, SmtpSink } from '../support/sink.js';
import { waitFor } from '../support/wait.js';
import { mxScenes, mxZone, nthOutcome, outcomes, received, reports, type World } from './mx-kit.js';

const mx = mxScenes();
const skip = await mx.skip;

/** A sink on port 25 of an address of its own, closed after the test. */
async function host(opts: SinkOptions = {}): Promise<SmtpSink> {
  const s = await mxSink(opts);
  mx.later(() => s.close());
  return s;
}

const world = (zone: Parameters<typeof mx.world>[0], extra = '', smtp = ''): Promise<World> =>
  mx.world(zone, { extra, smtp });

/** dst.test with a best MX (10) and a backup (20) at these addresses. */
const twoMx = (best: string, backup: string, extra = ''): Promise<World> =>
  world(
    mxZone([
      [10, best],
      [20, backup],
    ]),
    extra,
  );

describe('MX fallback, against logmta serve', { skip }, () => {
  test('the best MX refuses connections: the mail goes to the next preference, once', async () => {
    const down = await mxDown();
    const backup = await host();
    const w = await twoMx(down, backup.host);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await backup.waitForTransactions(1);
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(
      backup.transactions.map((t) => t.recipients),
      [['u@dst.test']],
    );
  });

  test('the best MX accepts and never greets: after greeting_timeout the next MX gets the mail', async () => {
    const tarpit = await mxTarpit();
    mx.later(() => tarpit.close());
    const backup = await host();
    const w = await twoMx(tarpit.host, backup.host);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await backup.waitForTransactions(1);
    assert.equal(tarpit.connections, 1);
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
  });

  test('six messages at once while the best MX is a tarpit: one wait for its greeting, then all go to the backup, each once', async () => {
    const tarpit = await mxTarpit();
    mx.later(() => tarpit.close());
    const backup = await host();
    const w = await twoMx(tarpit.host, backup.host);
    const rcpts = Array.from({ length: 6 }, (_, i) => `u${i}@dst.test`);
    await Promise.all(rcpts.map((r) => sendMail(w.stage.port, { from: 'a@src.test', to: [r] })));
    await waitFor(() => rcpts.every((r) => outcomes(w.stage, r).length > 0), 'every outcome', 20_000);
    assert.ok(rcpts.every((r) => outcomes(w.stage, r)[0]?.msg === 'delivered'));
    assert.deepEqual(backup.transactions.flatMap((t) => t.recipients).sort(), rcpts);
    assert.equal(tarpit.connections, 1, 'the tarpit is in the dead-host cache after its first silence');
  });

  test('the best MX greets with 421: the next MX gets the mail', async () => {
    const busy = await host({ greeting: '421 4.3.2 busy, try later' });
    const backup = await host();
    const w = await twoMx(busy.host, backup.host);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await backup.waitForTransactions(1);
    assert.equal(busy.transactions.length, 0);
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
  });

  test('the best MX greets with 554 (no service for us): the next MX gets the mail; with no other MX it is deferred, never bounced', async () => {
    const refusing = await host({ greeting: '554 5.7.1 no SMTP service here' });
    const backup = await host();
    const zone = mxZone(
      [
        [10, refusing.host],
        [20, backup.host],
      ],
      ['solo.test. 300 IN MX 10 mx1.dst.test.'],
    );
    const w = await world({ ...zone, zones: [...zone.zones, 'solo.test'] });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test', 'v@solo.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(
      backup.transactions.map((t) => t.recipients),
      [['u@dst.test']],
    );
    const v = await nthOutcome(w.stage, 'v@solo.test');
    assert.equal(v.msg, 'deferred');
    assert.match(String(v.text), /554 5\.7\.1 no SMTP service here/, 'the diagnostic keeps the greeting');
    assert.equal(reports(w.bounces).length, 0);
  });

  test('5xx to RCPT at the best MX is final: bounced, and the backup MX is not asked', async () => {
    const best = await host({ rcptReply: () => '550 5.1.1 no such user' });
    const backup = await host();
    const w = await twoMx(best.host, backup.host);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => reports(w.bounces).length === 1, 'the bounce', 15_000);
    const dsn = parseDsn(reports(w.bounces)[0]!.data);
    assert.equal(dsn.recipients[0]?.status, '5.1.1');
    assert.equal(backup.connections, 0);
  });

  test('the best MX down, the backup refuses the recipient: one bounce, naming the backup as Remote-MTA', async () => {
    const down = await mxDown();
    const backup = await host({ rcptReply: () => '550 5.7.1 relay not permitted' });
    const w = await twoMx(down, backup.host);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => reports(w.bounces).length === 1, 'the bounce', 15_000);
    const r = parseDsn(reports(w.bounces)[0]!.data).recipients[0];
    assert.equal(r?.status, '5.7.1');
    assert.equal(r?.['remote-mta'], 'dns; mx2.dst.test');
    assert.match(r?.['diagnostic-code'] ?? '', /^smtp; 550 5\.7\.1 relay not permitted/);
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'failed');
    assert.equal(reports(w.bounces).length, 1);
  });

  test('greylisting (4xx to RCPT) at the best MX defers the recipient; the retry delivers it there once', async () => {
    let asked = 0;
    const best = await host({
      rcptReply: () => (asked++ === 0 ? '451 4.7.1 greylisted, come back later' : undefined),
    });
    const backup = await host();
    const w = await twoMx(best.host, backup.host, '[queue]\nretry = ["1s"]\n');
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'deferred');
    await best.waitForTransactions(1);
    await waitFor(() => outcomes(w.stage, 'u@dst.test').length === 2, 'the retry outcome', 15_000);
    assert.equal(outcomes(w.stage, 'u@dst.test')[1]?.msg, 'delivered');
    assert.deepEqual(
      best.transactions.map((t) => t.recipients),
      [['u@dst.test']],
    );
    assert.equal(
      backup.connections,
      0,
      'a 4xx reply is not a connection failure: the backup MX is not asked',
    );
    assert.equal(reports(w.bounces).length, 0);
  });
});

describe('an MX list that names this host (RFC 5321 §5.1), against logmta serve', { skip }, () => {
  test('a backup MX whose primary is down keeps the mail (deferred) instead of sending it to itself; the primary gets it once it is back', async () => {
    const self = await mxDown();
    const primaryAddress = await mxDown();
    const w = await world(
      mxZone([
        [10, primaryAddress],
        [20, self],
      ]),
      '[queue]\nretry = ["1h"]\n',
      `listen = ["127.0.0.1:0", "${self}:25"]\nrelay_domains = ["dst.test"]`,
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.match(String(o.text), new RegExp(primaryAddress.replaceAll('.', '\\.')));
    assert.equal(received(w.stage), 1, 'the backup MX did not send the mail to itself');
    const primary = await SmtpSink.start({ address: primaryAddress, port: 25 });
    mx.later(() => primary.close());
    await w.stage.admin('flush');
    await primary.waitForTransactions(1);
    await waitFor(() => outcomes(w.stage, 'u@dst.test').length === 2, 'the delivery', 15_000);
    assert.equal(outcomes(w.stage, 'u@dst.test')[1]?.msg, 'delivered');
    assert.deepEqual(
      primary.transactions.map((t) => t.recipients),
      [['u@dst.test']],
    );
    assert.equal(received(w.stage), 1);
    assert.equal(reports(w.bounces).length, 0);
  });

  test('this host as the best MX of a domain it does not deliver locally is a mail loop: bounced with 5.4.6, the lower preference not tried', async () => {
    const self = await mxDown();
    const other = await host();
    const w = await world(
      mxZone([
        [10, self],
        [20, other.host],
      ]),
      '[queue]\nretry = ["1h"]\n',
      `listen = ["127.0.0.1:0", "${self}:25"]`,
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => reports(w.bounces).length === 1, 'the bounce', 15_000);
    const dsn = parseDsn(reports(w.bounces)[0]!.data);
    assert.equal(dsn.recipients[0]?.status, '5.4.6');
    assert.match(dsn.text, /loops back to myself/);
    assert.equal(other.connections, 0, 'a lower-preference MX than this host is no next hop');
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'failed');
    assert.equal(received(w.stage), 1);
  });

  /** This host as the Internet sees it behind NAT: an address of its own that forwards to our listener. */
  async function nat(): Promise<{ host: string; to: { port: number } }> {
    const to = { port: 0 };
    const l = await mxListener((sock) => {
      const up = net.connect(to.port, '127.0.0.1');
      up.on('error', () => sock.destroy());
      sock.on('close', () => up.destroy());
      up.on('close', () => sock.destroy());
      sock.pipe(up).pipe(sock);
    });
    mx.later(() => l.close());
    return { host: l.host, to };
  }

  test('behind NAT (the MX address is not ours, the greeting is): a backup MX keeps the mail for its primary instead of looping', async () => {
    const front = await nat();
    const primaryAddress = await mxDown();
    const w = await twoMx(primaryAddress, front.host, '[queue]\nretry = ["1h"]\n');
    front.to.port = w.stage.port;
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.match(String(o.text), /greets as this host/);
    assert.equal(received(w.stage), 1, 'the mail did not come back to us');
  });

  test('behind NAT as the best MX: bounced with 5.4.6, the lower preference not tried', async () => {
    const front = await nat();
    const other = await host();
    const w = await twoMx(front.host, other.host, '[queue]\nretry = ["1h"]\n');
    front.to.port = w.stage.port;
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await waitFor(() => reports(w.bounces).length === 1, 'the bounce', 15_000);
    assert.equal(parseDsn(reports(w.bounces)[0]!.data).recipients[0]?.status, '5.4.6');
    assert.equal(other.connections, 0);
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'failed');
    assert.equal(received(w.stage), 1);
  });

  test('an ETRN domain found by MX: this host (its backup MX) is never probed in its place; the customer, once up, is', async () => {
    const self = await mxDown();
    const customerAddress = await mxDown();
    const w = await world(
      {
        zones: ['branch.test'],
        records: [
          'branch.test. 300 IN MX 10 office.branch.test.',
          'branch.test. 300 IN MX 20 backup.branch.test.',
          `office.branch.test. 300 IN A ${customerAddress}`,
          `backup.branch.test. 300 IN A ${self}`,
        ],
      },
      '[log]\nlevel = "debug"\n[[etrn]]\ndomain = "branch.test"\nprobe_interval = "300ms"\n',
      `listen = ["127.0.0.1:0", "${self}:25"]`,
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@branch.test'] });
    await w.stage.waitHeld('branch.test', 1);
    await w.stage.waitLog('etrn probe failed', 3);
    assert.equal(w.stage.logLines().filter((l) => l.msg === 'etrn probe succeeded').length, 0);
    const office = await SmtpSink.start({ address: customerAddress, port: 25 });
    mx.later(() => office.close());
    await office.waitForTransactions(1);
    await w.stage.waitHeld('branch.test', 0);
    assert.deepEqual(
      office.transactions.map((t) => t.recipients),
      [['u@branch.test']],
    );
    assert.equal(received(w.stage), 1);
  });
});

describe('back to the best MX, against logmta serve', { skip }, () => {
  test('once the best MX is back, steady mail to the backup MX moves back to it (a kept connection is retired after connection_reuse_time)', async () => {
    const bestAddress = await mxDown();
    // PIPELINING: a connection is handed back while its end-of-data reply is still awaited, so
    // the retired one gets its QUIT behind that reply.
    const backup = await host({ pipelining: true });
    const w = await mx.world(
      mxZone([
        [10, bestAddress],
        [20, backup.host],
      ]),
      { delivery: 'connection_reuse_time = "1s"' },
    );
    let n = 0;
    const next = async (): Promise<void> => {
      const rcpt = `u${n++}@dst.test`;
      await sendMail(w.stage.port, { from: 'a@src.test', to: [rcpt] });
      await nthOutcome(w.stage, rcpt);
    };
    await next();
    assert.equal(backup.transactions.length, 1);
    const best = await SmtpSink.start({ address: bestAddress, port: 25 });
    mx.later(() => best.close());
    await w.stage.admin('flush'); // the best MX's dead-host mark goes
    // A message every few milliseconds: the connection to the backup never sits idle for long.
    const until = Date.now() + 15_000;
    while (best.transactions.length === 0 && Date.now() < until) await next();
    assert.ok(best.transactions.length > 0, `all ${n} messages went to the backup MX`);
    assert.equal(best.transactions.length + backup.transactions.length, n, 'each message once');
  });
});

describe('one message for several MX domains, against logmta serve', { skip }, () => {
  test('each domain its own outcome: two recipients in one transaction, one via the backup MX, one bounced alone', async () => {
    const a = await host();
    const b = await host({ rcptReply: () => '550 5.1.1 unknown user' });
    const cDown = await mxDown();
    const cBackup = await host();
    const w = await world({
      zones: ['a.test', 'b.test', 'c.test'],
      records: [
        'a.test. 300 IN MX 10 mx.a.test.',
        `mx.a.test. 300 IN A ${a.host}`,
        'b.test. 300 IN MX 10 mx.b.test.',
        `mx.b.test. 300 IN A ${b.host}`,
        'c.test. 300 IN MX 10 mx1.c.test.',
        'c.test. 300 IN MX 20 mx2.c.test.',
        `mx1.c.test. 300 IN A ${cDown}`,
        `mx2.c.test. 300 IN A ${cBackup.host}`,
      ],
    });
    const to = ['x@a.test', 'y@b.test', 'z@c.test', 'w@a.test'];
    await sendMail(w.stage.port, { from: 'a@src.test', to });
    await waitFor(() => to.every((r) => outcomes(w.stage, r).length > 0), 'every outcome', 20_000);
    await waitFor(() => reports(w.bounces).length >= 1, 'the bounce', 15_000);
    assert.deepEqual(
      a.transactions.map((t) => t.recipients),
      [['x@a.test', 'w@a.test']],
    );
    assert.deepEqual(
      cBackup.transactions.map((t) => t.recipients),
      [['z@c.test']],
    );
    assert.equal(b.transactions.length, 0);
    const bounced = reports(w.bounces).flatMap((r) =>
      parseDsn(r.data).recipients.map((x) => x['final-recipient']),
    );
    assert.deepEqual(bounced, ['rfc822; y@b.test']);
    assert.deepEqual(
      to.map((r) => outcomes(w.stage, r).map((o) => o.msg)),
      [['delivered'], ['failed'], ['delivered'], ['delivered']],
    );
  });
});

/**
 * A peer that takes one message per connection and then closes it as the next one begins (at
 * RSET, before any reply): what a server's idle timeout firing just as we reuse the connection
 * looks like. Records each message's recipients.
 */
async function oneMessagePerConnection(): Promise<{ l: MxListener; got: string[][] }> {
  const got: string[][] = [];
  const l = await mxListener((sock) => {
    let done = 0;
    let rcpts: string[] = [];
    let inData = false;
    let buf = '';
    sock.setEncoding('latin1');
    sock.write('220 peer.test ESMTP\r\n');
    sock.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\r\n'); i >= 0 && !sock.destroyed; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (inData) {
          if (line !== '.') continue;
          inData = false;
          done++;
          got.push(rcpts);
          rcpts = [];
          sock.write('250 2.0.0 ok\r\n');
        } else if (done > 0 && (verb === 'RSET' || verb === 'MAIL')) sock.destroy();
        else if (verb === 'DATA') {
          inData = true;
          sock.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') sock.end('221 bye\r\n');
        else {
          if (verb === 'RCPT') rcpts.push(line.slice(9, -1));
          sock.write('250 ok\r\n');
        }
      }
    });
  });
  mx.later(() => l.close());
  return { l, got };
}

describe('a kept connection the peer has given up on, against logmta serve', { skip }, () => {
  test('closed by the peer as the next message starts on it: that message goes at once on a new connection, once', async () => {
    const { l, got } = await oneMessagePerConnection();
    const w = await world(mxZone([[10, l.host]]), '[queue]\nretry = ["1h"]\n');
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    // Within the 5 s the connection is kept: the next message takes it.
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['v@dst.test'] });
    const o = await nthOutcome(w.stage, 'v@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.deepEqual(got, [['u@dst.test'], ['v@dst.test']]);
    assert.equal(l.connections, 2);
  });

  test('421 to MAIL on a kept connection (a limit of messages per session): the message goes at once on a new connection', async () => {
    let mails = 0;
    const peer = await host({
      mailReply: () => (++mails === 2 ? '421 4.7.0 too many messages in this session' : undefined),
    });
    const w = await world(mxZone([[10, peer.host]]), '[queue]\nretry = ["1h"]\n');
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['v@dst.test'] });
    const o = await nthOutcome(w.stage, 'v@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.deepEqual(
      peer.transactions.map((t) => t.recipients),
      [['u@dst.test'], ['v@dst.test']],
    );
    assert.equal(peer.connections, 2);
  });

  test('a new connection that fails the same way is not retried again: deferred, nothing lost', async () => {
    const peer = await host({ mailReply: () => '421 4.3.2 shutting down' });
    const w = await world(mxZone([[10, peer.host]]), '[queue]\nretry = ["1h"]\n');
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred');
    assert.equal(o.code, 421);
    assert.equal(peer.connections, 1, 'a first connection that gets 421 is the destination speaking');
    assert.equal(w.stage.logLines().filter((l) => l.msg === 'deferred').length, 1);
  });
});
