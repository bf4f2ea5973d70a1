// Protocol fuzzer against the ODMR provider listener (RFC 2645) of a whole daemon: random and
// mutated streams of EHLO/AUTH/ATRN/QUIT and everything the initial state must refuse, random
// bytes, oversized lines, pipelining floods and half-closed connections. Mail is held for the
// account's domain, so a successful ATRN really reverses the connection: from then on the fuzzer
// is the "customer server" and keeps sending garbage to logmta's client role.
// Properties: no crash, no unhandled rejection; every line the provider sends before the
// turnaround is a reply with a code from the RFC set; each connection ends when the client ends
// its side; held mail is never lost to a garbage customer; heap growth stays bounded.
// Fails: with fast-check's counterexample and the offending output.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import {
  RawClient,
  replyProblems,
  settledHeap,
  startTestMta,
  type TestMta,
  watchUnhandled,
} from './harness.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 120);
const TURNAROUND = '250 2.0.0 OK now reversing the connection\r\n';
let mta: TestMta;
let odmrPort = 0;
let unhandled: ReturnType<typeof watchUnhandled>;

before(async () => {
  unhandled = watchUnhandled();
  mta = await startTestMta({
    toml: [
      '[odmr]',
      'listen = ["127.0.0.1:0"]',
      '[[odmr.account]]',
      'user = "acme"',
      'password = "acme-pw"',
      'domains = ["acme.test", "other.acme.test"]',
    ].join('\n'),
  });
  const a = mta.daemon.addresses.odmr[0] ?? '';
  odmrPort = Number(a.slice(a.lastIndexOf(':') + 1));
  // Hold some mail for the account, so ATRN has something to deliver.
  const c = await RawClient.connect(mta.port);
  await c.waitFor(/^220 .*\r\n/);
  await c.command('EHLO feeder.example');
  for (let i = 0; i < 3; i++) {
    await c.command('MAIL FROM:<a@feeder.example>');
    assert.match(await c.command(`RCPT TO:<u${i}@acme.test>`), /^250 /);
    await c.command('DATA');
    assert.match(await c.command(`Subject: held ${i}\r\n\r\nfor the customer\r\n.`), /^250 /);
  }
  c.destroy();
});

after(async () => {
  await mta.stop();
  unhandled.stop();
});

const b64 = (s: string): string => Buffer.from(s).toString('base64');

const command: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    'EHLO customer.test',
    'HELO customer.test',
    `AUTH PLAIN ${b64('\0acme\0acme-pw')}`,
    `AUTH PLAIN ${b64('\0acme\0wrong')}`,
    'AUTH LOGIN',
    'AUTH CRAM-MD5',
    'CRAM',
    'ATRN',
    'ATRN acme.test',
    'ATRN other.acme.test,acme.test',
    'ATRN evil.test',
    'ATRN acme.test,,',
    'MAIL FROM:<a@b>',
    'RCPT TO:<x@acme.test>',
    'DATA',
    'ETRN acme.test',
    'STARTTLS',
    'NOOP',
    'RSET',
    'QUIT',
    '220 customer.test ESMTP',
    '250 ok',
    '354 go',
  ),
  fc.string({ maxLength: 60 }).map((s) => `ATRN ${s}`),
  fc.string({ maxLength: 60 }),
);

const piece: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 8, arbitrary: command.map((c) => Buffer.from(`${c}\r\n`)) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(command, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('\r\n', '\n', '', '\0\r\n'))
      .map(([c, at, byte, eol]) => {
        const b = Buffer.from(c);
        if (b.length > 0) b[at % b.length] = byte;
        return Buffer.concat([b, Buffer.from(eol)]);
      }),
  },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 400, max: 40_000 }).map((n) => Buffer.from(`${'A'.repeat(n)}\r\n`)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(command, fc.integer({ min: 10, max: 200 }))
      .map(([c, n]) => Buffer.from(`${c}\r\n`.repeat(n))),
  },
);

/** Runs one connection; a "CRAM" line is replaced by a correct answer to the last 334 challenge. */
async function run(
  pieces: Uint8Array[],
  halfClose: boolean,
  localAddress?: string,
): Promise<{ out: string; closed: boolean }> {
  const c = await RawClient.connect(odmrPort, localAddress);
  await c.waitFor(/^220 .*\r\n/, 3000);
  for (const p of pieces) {
    if (Buffer.from(p).toString('latin1') === 'CRAM\r\n') {
      await c.waitFor(/334 \S+\r\n$/, 1000);
      const m = /334 (\S+)\r\n$/.exec(c.out);
      const challenge = m ? Buffer.from(m[1]!, 'base64').toString('latin1') : '';
      c.write(`${b64(`acme ${createHmac('md5', 'acme-pw').update(challenge).digest('hex')}`)}\r\n`);
      continue;
    }
    c.write(p);
    if (p.length > 1000) await new Promise((r) => setImmediate(r));
  }
  if (!halfClose) await c.waitClosed(100);
  c.socket.end();
  const closed = await c.waitClosed(6000);
  c.destroy();
  return { out: c.out, closed };
}

function providerPart(out: string): string {
  const i = out.indexOf(TURNAROUND);
  return i < 0 ? out : out.slice(0, i + TURNAROUND.length);
}

let logins = 0;
let turnarounds = 0;

describe('ODMR provider fuzzing', () => {
  test('random and mutated streams get only RFC replies before the turnaround, and every connection ends', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(piece, { minLength: 1, maxLength: 20 }),
        fc.boolean(),
        fc.boolean(),
        async (rest, halfClose, login) => {
          // Half the runs log in and send ATRN first, so the rest is fed to logmta's client role.
          const prefix = login
            ? ['EHLO customer.test', 'AUTH CRAM-MD5', 'CRAM', 'ATRN acme.test'].map((l) =>
                Buffer.from(`${l}\r\n`),
              )
            : [];
          const pieces = [...prefix, ...rest];
          // Logging-in runs come from their own loopback address, so earlier wrong passwords
          // (the per-IP throttle) do not stop them from reaching the turnaround.
          const from = login ? `127.1.${Math.floor(++logins / 250)}.${(logins % 250) + 1}` : undefined;
          const o = await run(pieces, halfClose, from);
          if (o.out.includes(TURNAROUND)) turnarounds++;
          assert.deepEqual(replyProblems(providerPart(o.out)), [], o.out.slice(0, 2000));
          assert.ok(o.closed, `connection not closed:\n${o.out.slice(-500)}`);
          assert.deepEqual(unhandled.errors, []);
        },
      ),
      { numRuns: RUNS, interruptAfterTimeLimit: 20_000 },
    );
    assert.ok(turnarounds > 0, 'no run reached the ATRN turnaround');
  });

  test('a customer that authenticates, sends ATRN and then answers garbage loses no held mail', async () => {
    let reversed = 0;
    for (const garbage of [
      '\x00\xff\r\n',
      '999 nope\r\n',
      `220-${'x'.repeat(5000)}\r\n`,
      '220 ok\r\n250 ok\r\n',
    ]) {
      // A fresh loopback address: the fuzzer's wrong passwords got 127.0.0.1 throttled.
      const c = await RawClient.connect(odmrPort, `127.0.0.${20 + reversed}`);
      await c.waitFor(/^220 .*\r\n/);
      await c.command('EHLO customer.test');
      // ODMR takes PLAIN only under TLS (loopback included): CRAM-MD5, as fetchmail does.
      const ch = await c.command('AUTH CRAM-MD5');
      const challenge = Buffer.from(ch.slice(4).trim(), 'base64').toString('latin1');
      const a = await c.command(b64(`acme ${createHmac('md5', 'acme-pw').update(challenge).digest('hex')}`));
      assert.match(a, /^235 /, a);
      {
        const r = await c.command('ATRN acme.test');
        assert.match(r, /^(250|451|453) /, r);
        if (r.startsWith('250')) {
          reversed++;
          // We are now the customer's server: greet with garbage instead of 220.
          c.write(garbage);
        }
      }
      c.socket.end();
      assert.ok(await c.waitClosed(6000), `connection not closed: ${c.out.slice(-300)}`);
      c.destroy();
    }
    assert.ok(reversed >= 1, 'no ATRN was accepted: the turnaround was never exercised');
    for (let i = 0; i < 100 && mta.daemon.queues.heldCount('acme.test') !== 3; i++)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(
      mta.daemon.queues.heldCount('acme.test'),
      3,
      'held mail was lost or delivered to a garbage customer',
    );
    assert.deepEqual(unhandled.errors, []);
  });

  test('heap stays bounded over many hostile ODMR connections', async () => {
    const stream = [
      Buffer.from(`EHLO x\r\n${'MAIL FROM:<a@b>\r\n'.repeat(100)}ATRN acme.test\r\n`),
      Buffer.from(`${'Z'.repeat(30_000)}\r\n`),
    ];
    for (let i = 0; i < 10; i++) await run(stream, true);
    const h0 = settledHeap();
    for (let i = 0; i < 100; i++) {
      const o = await run(stream, true);
      assert.deepEqual(replyProblems(o.out), [], o.out.slice(0, 500));
      assert.match(o.out, /^220 /);
    }
    const growth = settledHeap() - h0;
    assert.ok(growth < 8 * 1024 * 1024, `heap grew by ${(growth / 1048576).toFixed(1)} MiB`);
  });
});
