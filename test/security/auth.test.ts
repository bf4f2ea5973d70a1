// Authentication abuse: brute force is throttled per client address (delayed 535s, then 421 and
// a block that also refuses new connections' AUTH, while another address is unaffected);
// credentials never reach the logs (a daemon logging at debug into a buffer, through AUTH PLAIN,
// LOGIN and CRAM-MD5, good and bad); PLAIN and LOGIN are neither offered nor accepted without
// TLS on a non-loopback connection (session level, with a fake non-loopback peer and the real
// policy hooks), but are over TLS.
// Fails: naming the attempt, the reply, or the log line that leaked.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SmtpListener } from '../../src/smtp/server/listener.js';
import { RawClient, sleep, startTestMta, type TestMta } from '../fuzz/harness.js';
import { Harness } from '../support/session.js';
import { waitFor } from '../support/wait.js';

const PASSWORD = 'Tr0ub4dor&3-horse';
let mta: TestMta;

before(async () => {
  mta = await startTestMta({ toml: `[[user]]\nname = "alice"\npassword = ${JSON.stringify(PASSWORD)}` });
});
after(async () => {
  await mta.stop();
});

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

/** A raw client bound to a given local (loopback) address. */
function rawFrom(
  port: number,
  localAddress: string,
): Promise<{ say(l: string): Promise<string>; out(): string; closed(): boolean; destroy(): void }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    let out = '';
    let closed = false;
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      out += d;
    });
    s.on('close', () => {
      closed = true;
    });
    s.on('error', () => {});
    const say = async (l: string): Promise<string> => {
      const start = out.length;
      s.write(`${l}\r\n`);
      const end = Date.now() + 10_000;
      while (!/(^|\r\n)\d{3} [^\r\n]*\r\n$/.test(out.slice(start)) && !closed && Date.now() < end)
        await sleep(5);
      return out.slice(start);
    };
    s.once('connect', async () => {
      const end = Date.now() + 5000;
      while (!out.includes('\r\n') && Date.now() < end) await sleep(5);
      resolve({ say, out: () => out, closed: () => closed, destroy: () => s.destroy() });
    });
    s.once('error', reject);
  });
}

describe('AUTH brute force is throttled per address', () => {
  let listener: SmtpListener;
  let port = 0;
  before(async () => {
    // The daemon's real policy hooks behind a listener with a fast throttle (the daemon's
    // defaults — 1 s doubling to 16 s, block after 5 — would make this test take a minute).
    listener = new SmtpListener(
      {
        hostname: 'mx.test',
        authThrottleOptions: { baseDelayMs: 100, maxDelayMs: 800, maxFailures: 4, blockMs: 60_000 },
      },
      mta.daemon.listeners[0]!.hooks,
    );
    port = (await listener.listen(0, '127.0.0.1')).port;
  });
  after(async () => {
    await listener.stop(100);
  });

  test('wrong passwords get slower 535s, then 421 and a block; another address is unaffected', async () => {
    const c = await rawFrom(port, '127.0.0.3');
    await c.say('EHLO brute.example');
    const delays: number[] = [];
    let last = '';
    for (let i = 0; i < 6 && !c.closed(); i++) {
      const t0 = Date.now();
      last = await c.say(`AUTH PLAIN ${b64(`\0alice\0guess${i}`)}`);
      delays.push(Date.now() - t0);
      if (/^421 /m.test(last)) break;
      assert.match(last, /^535 5\.7\.8 /, `attempt ${i}`);
    }
    assert.match(last, /^535 [^\r]*\r\n421 4\.7\.0 /, `4th failure: ${last}`);
    assert.equal(delays.length, 4);
    // 100, 200, 400, 800 ms: each answer slower than the one before, never instant.
    for (let i = 0; i < delays.length; i++)
      assert.ok(delays[i]! >= 90 * 2 ** i, `delay ${i}: ${delays.join(',')}`);
    await waitFor(() => c.closed(), 'the blocked client disconnected');

    // A new connection from the same address: AUTH is refused at once, even with the right password.
    const again = await rawFrom(port, '127.0.0.3');
    await again.say('EHLO brute.example');
    assert.match(await again.say(`AUTH PLAIN ${b64(`\0alice\0${PASSWORD}`)}`), /^421 4\.7\.0 /);
    again.destroy();

    // Another address is not blocked.
    const other = await rawFrom(port, '127.0.0.4');
    await other.say('EHLO other.example');
    assert.match(await other.say(`AUTH PLAIN ${b64(`\0alice\0${PASSWORD}`)}`), /^235 /);
    other.destroy();
    c.destroy();
  });

  test('the daemon delays a wrong password by its default base delay (1 s)', async () => {
    const c = await RawClient.connect(mta.port);
    await c.waitFor(/^220 .*\r\n/);
    await c.command('EHLO brute.example');
    const t0 = Date.now();
    assert.match(await c.command(`AUTH PLAIN ${b64('\0alice\0nope')}`, 5000), /^535 /);
    assert.ok(Date.now() - t0 >= 900, `535 after ${Date.now() - t0} ms`);
    c.destroy();
  });

  test('a client that pipelines guesses and half-closes is closed during the first delay, unanswered', async () => {
    // Answering in order after a half-close would hold the connection through every delay
    // (1 + 2 + 4 + 8 s ...) for a client that has gone; and its buffered guesses must not be tried.
    // Its own address: no failures recorded before.
    const c = await RawClient.connect(mta.port, '127.0.0.6');
    await c.waitFor(/^220 .*\r\n/);
    await c.command('EHLO brute.example');
    const before = c.out.length;
    const t0 = Date.now();
    c.write(`AUTH PLAIN ${b64('\0alice\0guess-a')}\r\n`.repeat(10));
    await sleep(100);
    c.socket.end();
    assert.ok(await c.waitClosed(3000), 'the server closed the half-closed connection');
    assert.ok(Date.now() - t0 < 900, `closed after ${Date.now() - t0} ms, inside the first delay`);
    assert.equal(c.out.slice(before), '', 'no 535 was sent after the client went');
    c.destroy();
    // Only the first guess was tried: the next failure from this address is the second (2 s).
    const next = await RawClient.connect(mta.port, '127.0.0.6');
    await next.waitFor(/^220 .*\r\n/);
    await next.command('EHLO brute.example');
    const t1 = Date.now();
    assert.match(await next.command(`AUTH PLAIN ${b64('\0alice\0guess-b')}`, 5000), /^535 /);
    const took = Date.now() - t1;
    assert.ok(took >= 1900 && took < 3900, `second failure answered after ${took} ms`);
    assert.match(await next.command(`AUTH PLAIN ${b64(`\0alice\0${PASSWORD}`)}`, 5000), /^235 /);
    next.destroy();
  });
});

describe('credentials never appear in logs', () => {
  test('AUTH PLAIN, LOGIN and CRAM-MD5, right and wrong, leave no password or encoding of it in the log', async () => {
    const wrong = 'WrongPass-0451';
    const secrets = [PASSWORD, wrong];
    const encodings = [
      ...secrets.map(b64),
      ...secrets.map((p) => b64(`\0alice\0${p}`)),
      ...secrets.map((p) => b64(`alice\0alice\0${p}`)),
    ];
    // Each on its own connection; the daemon's loopback clients may use PLAIN/LOGIN.
    const scripts: string[][] = [
      [`AUTH PLAIN ${b64(`\0alice\0${wrong}`)}`],
      [`AUTH PLAIN ${b64(`\0alice\0${PASSWORD}`)}`],
      ['AUTH PLAIN', b64(`alice\0alice\0${PASSWORD}`)],
      ['AUTH LOGIN', b64('alice'), b64(wrong)],
      [`AUTH LOGIN ${b64('alice')}`, b64(PASSWORD)],
      ['AUTH CRAM-MD5', 'CRAM'],
      ['AUTH CRAM-MD5', 'CRAM-WRONG'],
    ];
    const lines = () => mta.logs.join('').match(/auth (ok|failed)/g)?.length ?? 0;
    const before = lines();
    let outcomes = 0;
    for (const script of scripts) {
      const c = await RawClient.connect(mta.port);
      await c.waitFor(/^220 .*\r\n/);
      await c.command('EHLO logs.example');
      let r = '';
      for (const step of script) {
        let line = step;
        if (step.startsWith('CRAM')) {
          const challenge = Buffer.from(r.slice(4).trim(), 'base64').toString('latin1');
          const key = step === 'CRAM' ? PASSWORD : wrong;
          line = b64(`alice ${createHmac('md5', key).update(challenge).digest('hex')}`);
        }
        r = await c.command(line, 5000);
      }
      assert.match(r, /^(235|535) /, `${script.join(' / ')} -> ${r}`);
      outcomes++;
      await c.command('QUIT');
      c.destroy();
    }
    // The log is written asynchronously: wait for a line per AUTH outcome before reading it.
    await waitFor(() => lines() >= before + outcomes, `${outcomes} auth log lines`);
    const log = mta.logs.join('');
    assert.match(log, /auth ok/, 'the SMTP layer logged nothing: the test would prove nothing');
    assert.match(log, /auth failed/);
    for (const s of [...secrets, ...encodings]) assert.ok(!log.includes(s), `log contains ${s}`);
    // CRAM-MD5 digests are password-equivalent for a replay of the same challenge: not logged either.
    assert.doesNotMatch(log, /[0-9a-f]{32}/);
  });
});

describe('PLAIN and LOGIN need TLS on non-loopback connections', () => {
  test('a non-loopback client without TLS is not offered PLAIN/LOGIN and gets 538 for them', async () => {
    const h = new Harness({ hooks: mta.daemon.listeners[0]!.hooks, peer: { remoteAddress: '192.0.2.7' } });
    const ehlo = await h.send('EHLO remote.example\r\n');
    assert.match(ehlo, /250[ -]AUTH CRAM-MD5\r\n/);
    assert.doesNotMatch(ehlo, /PLAIN|LOGIN/);
    assert.match(await h.send(`AUTH PLAIN ${b64(`\0alice\0${PASSWORD}`)}\r\n`), /^538 5\.7\.11 /);
    assert.match(await h.send('AUTH LOGIN\r\n'), /^538 5\.7\.11 /);
    assert.match(await h.send(`AUTH LOGIN ${b64('alice')}\r\n`), /^538 5\.7\.11 /);
    assert.equal(h.session.client.auth, undefined);
  });

  test('an IPv4-mapped non-loopback address is not mistaken for loopback', async () => {
    const h = new Harness({
      hooks: mta.daemon.listeners[0]!.hooks,
      peer: { remoteAddress: '::ffff:192.0.2.7' },
    });
    await h.send('EHLO remote.example\r\n');
    assert.match(await h.send(`AUTH PLAIN ${b64(`\0alice\0${PASSWORD}`)}\r\n`), /^538 /);
  });

  test('the same client over TLS may use PLAIN', async () => {
    const h = new Harness({
      hooks: mta.daemon.listeners[0]!.hooks,
      peer: { remoteAddress: '192.0.2.7', tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_128_GCM_SHA256' } },
    });
    assert.match(await h.send('EHLO remote.example\r\n'), /250[ -]AUTH PLAIN LOGIN CRAM-MD5\r\n/);
    assert.match(await h.send(`AUTH PLAIN ${b64(`\0alice\0${PASSWORD}`)}\r\n`), /^235 /);
  });

  test('a loopback client without TLS may use PLAIN (documented exception)', async () => {
    const h = new Harness({ hooks: mta.daemon.listeners[0]!.hooks, peer: { remoteAddress: '127.0.0.1' } });
    await h.send('EHLO local.example\r\n');
    assert.match(await h.send(`AUTH PLAIN ${b64(`\0alice\0${PASSWORD}`)}\r\n`), /^235 /);
  });
});
