import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cramDigest } from '../../protocol/sasl.js';
import { Harness } from '../../../../test/support/session.js';
import { chunksOf } from '../message-data.js';

const codes = Harness.codes;
const b64 = (s: string) => Buffer.from(s).toString('base64');
const users: Record<string, string> = { alice: 'secret' };
const hooks = {
  verifyPassword: (u: string, p: string) => users[u] === p,
  cramSecret: (u: string) => users[u] ?? null,
};
const loopback = { remoteAddress: '127.0.0.1' };

describe('AUTH', () => {
  test('without accounts AUTH is neither offered nor taken, and HELP does not list it', async () => {
    const h = new Harness({ hooks: {}, peer: loopback });
    const ehlo = await h.send('EHLO c\r\n');
    assert.doesNotMatch(ehlo, /AUTH/);
    assert.deepEqual(codes(await h.send(`AUTH PLAIN ${b64('\0alice\0secret')}\r\n`)), ['503 5.5.1']);
    const help = await h.send('HELP\r\n');
    assert.doesNotMatch(help, /AUTH|STARTTLS|ETRN/);
    assert.match(help, /^214-2\.0\.0 Commands: EHLO HELO MAIL/);
  });

  test('PLAIN with an initial response succeeds from loopback', async () => {
    const h = new Harness({ hooks, peer: loopback });
    const out = await h.send(`EHLO c\r\nAUTH PLAIN ${b64('\0alice\0secret')}\r\n`);
    assert.deepEqual(codes(out), ['250', '235 2.7.0']);
    assert.equal(h.session.client.auth, 'alice');
  });

  test('PLAIN via a continuation line', async () => {
    const h = new Harness({ hooks, peer: loopback });
    await h.send('EHLO c\r\n');
    assert.equal(await h.send('AUTH PLAIN\r\n'), '334 \r\n');
    assert.deepEqual(codes(await h.send(`${b64('\0alice\0secret')}\r\n`)), ['235 2.7.0']);
  });

  test('LOGIN asks for user name and password', async () => {
    const h = new Harness({ hooks, options: { allowPlainWithoutTls: true } });
    await h.send('EHLO c\r\n');
    assert.equal(await h.send('AUTH LOGIN\r\n'), '334 VXNlcm5hbWU6\r\n');
    assert.equal(await h.send(`${b64('alice')}\r\n`), '334 UGFzc3dvcmQ6\r\n');
    assert.deepEqual(codes(await h.send(`${b64('secret')}\r\n`)), ['235 2.7.0']);
  });

  test('CRAM-MD5 verifies the HMAC of the challenge', async () => {
    const h = new Harness({ hooks });
    await h.send('EHLO c\r\n');
    const out = await h.send('AUTH CRAM-MD5\r\n');
    const challenge = Buffer.from(out.slice(4).trim(), 'base64').toString();
    assert.match(challenge, /^<.+@mx\.test>$/);
    const resp = b64(`alice ${cramDigest('secret', challenge)}`);
    assert.deepEqual(codes(await h.send(`${resp}\r\n`)), ['235 2.7.0']);
    assert.equal(h.session.client.auth, 'alice');
  });

  test('CRAM-MD5 with a wrong digest or unknown user fails with 535 5.7.8', async () => {
    const h = new Harness({ hooks });
    await h.send('EHLO c\r\nAUTH CRAM-MD5\r\n');
    assert.deepEqual(codes(await h.send(`${b64(`alice ${'0'.repeat(32)}`)}\r\n`)), ['535 5.7.8']);
    await h.send('AUTH CRAM-MD5\r\n');
    assert.deepEqual(codes(await h.send(`${b64(`bob ${'0'.repeat(32)}`)}\r\n`)), ['535 5.7.8']);
    assert.equal(h.session.client.auth, undefined);
  });

  test('a wrong password fails with 535 5.7.8', async () => {
    const h = new Harness({ hooks, peer: loopback });
    const out = await h.send(`EHLO c\r\nAUTH PLAIN ${b64('\0alice\0wrong')}\r\n`);
    assert.deepEqual(codes(out), ['250', '535 5.7.8']);
  });

  test('an authzid other than the user is refused', async () => {
    const h = new Harness({ hooks, peer: loopback });
    const out = await h.send(`EHLO c\r\nAUTH PLAIN ${b64('root\0alice\0secret')}\r\n`);
    assert.deepEqual(codes(out), ['250', '535 5.7.8']);
  });

  test('PLAIN and LOGIN are refused without TLS from a non-loopback client (538 5.7.11)', async () => {
    const h = new Harness({ hooks });
    const out = await h.send(`EHLO c\r\nAUTH PLAIN ${b64('\0alice\0secret')}\r\nAUTH LOGIN\r\n`);
    assert.deepEqual(codes(out), ['250', '538 5.7.11', '538 5.7.11']);
  });

  test('PLAIN is allowed once TLS is active', async () => {
    const h = new Harness({ hooks, peer: { tls: { protocol: 'TLSv1.3', cipher: 'X' } } });
    const ehlo = await h.send('EHLO c\r\n');
    assert.match(ehlo, /AUTH PLAIN LOGIN CRAM-MD5/);
    assert.deepEqual(codes(await h.send(`AUTH PLAIN ${b64('\0alice\0secret')}\r\n`)), ['235 2.7.0']);
  });

  test('"*" cancels, bad base64 and unknown mechanisms are errors', async () => {
    const h = new Harness({ hooks, peer: loopback });
    await h.send('EHLO c\r\nAUTH PLAIN\r\n');
    assert.deepEqual(codes(await h.send('*\r\n')), ['501 5.0.0']);
    assert.deepEqual(codes(await h.send('AUTH PLAIN !!!\r\nAUTH GSSAPI\r\n')), ['501 5.5.2', '504 5.5.4']);
  });

  test('AUTH needs EHLO, is refused in a transaction and once authenticated', async () => {
    const h = new Harness({ hooks, peer: loopback });
    assert.deepEqual(codes(await h.send('AUTH PLAIN\r\n')), ['503 5.5.1']);
    await h.send('HELO c\r\n');
    assert.deepEqual(codes(await h.send('AUTH PLAIN\r\n')), ['503 5.5.1']);
    await h.send('EHLO c\r\nMAIL FROM:<a@b.c>\r\n');
    assert.deepEqual(codes(await h.send('AUTH PLAIN\r\n')), ['503 5.5.1']);
    await h.send(`RSET\r\nAUTH PLAIN ${b64('\0alice\0secret')}\r\n`);
    assert.deepEqual(codes(await h.send('AUTH PLAIN\r\n')), ['503 5.5.1']);
  });

  test('after AUTH, submission MAIL is allowed and Received: says ESMTPA with the identity', async () => {
    const h = new Harness({ hooks, peer: loopback, options: { submission: true } });
    await h.send(`EHLO c\r\nAUTH PLAIN ${b64('\0alice\0secret')}\r\n`);
    const out = await h.send('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n');
    assert.deepEqual(codes(out), ['250 2.1.0', '250 2.1.5', '354']);
    await h.send('x\r\n.\r\n');
    const rec = chunksOf(h.accepted[0]?.data)[0]?.toString() ?? '';
    assert.match(rec, /\(authenticated sender: alice\)/);
    assert.match(rec, /with ESMTPA id/);
    assert.equal(h.accepted[0]?.client.auth, 'alice');
  });

  test('the throttle delays the 535 and blocks after too many failures', async () => {
    const calls: string[] = [];
    let failures = 0;
    const throttle = {
      isBlocked: () => failures >= 3,
      failure: (ip: string) => {
        calls.push(ip);
        failures++;
        return { delayMs: 1000, blocked: failures >= 3 };
      },
      success: () => {},
    };
    const h = new Harness({ hooks, peer: loopback, options: { authThrottle: throttle } });
    await h.send('EHLO c\r\n');
    assert.equal(await h.send(`AUTH PLAIN ${b64('\0alice\0x')}\r\nNOOP\r\n`), '');
    h.clock.advance(999);
    await h.send('');
    assert.equal(h.output(), '');
    h.clock.advance(1);
    assert.deepEqual(codes(await h.send('')), ['535 5.7.8', '250 2.0.0']);
    await h.send(`AUTH PLAIN ${b64('\0alice\0x')}\r\n`);
    h.clock.advance(1000);
    assert.deepEqual(codes(await h.send('')), ['535 5.7.8']);
    await h.send(`AUTH PLAIN ${b64('\0alice\0x')}\r\n`);
    h.clock.advance(1000);
    assert.deepEqual(codes(await h.send('')), ['535 5.7.8', '421 4.7.0']);
    assert.equal(h.io.closed, true);
    assert.deepEqual(calls, ['127.0.0.1', '127.0.0.1', '127.0.0.1']);
  });
});
