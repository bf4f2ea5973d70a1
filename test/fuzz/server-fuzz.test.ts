// Protocol fuzzer against the real SMTP server: a whole daemon on loopback (listener, policy
// hooks, a real queue in a temp dir, a sink behind a [[route]]) fed random and mutated command
// streams over real sockets — valid commands mutated, random bytes, oversized lines, NULs,
// pipelining floods, BDAT with wrong sizes, and connections half-closed mid-command.
// Properties: the process never crashes and has no unhandled rejection; every line the server
// sends is a reply with a code from the RFC set; each connection ends (no hang); heap growth
// after many runs stays under a bound.
// Fails: with fast-check's counterexample (seed and shrunk input) and the offending output.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { SmtpSink } from '../support/sink.js';
import {
  RawClient,
  replyProblems,
  settledHeap,
  startTestMta,
  type TestMta,
  watchUnhandled,
} from './harness.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
/** FUZZ_SEED and FUZZ_PATH replay a counterexample fast-check printed. */
const REPLAY: fc.Parameters<unknown> =
  process.env.FUZZ_SEED === undefined
    ? {}
    : {
        seed: Number(process.env.FUZZ_SEED),
        ...(process.env.FUZZ_PATH === undefined ? {} : { path: process.env.FUZZ_PATH }),
        endOnFailure: true,
        verbose: 2,
      };

let mta: TestMta;
let sink: SmtpSink;
let unhandled: ReturnType<typeof watchUnhandled>;

before(async () => {
  unhandled = watchUnhandled();
  sink = await SmtpSink.start({ pipelining: true, chunking: true });
  mta = await startTestMta({
    toml: `max_message_size = "64KiB"\n[[route]]\ndomain = "routed.test"\nhost = "127.0.0.1:${sink.port}"\n[[user]]\nname = "alice"\npassword = "s3cret-pw"`,
  });
});

after(async () => {
  await mta.stop();
  await sink.close();
  unhandled.stop();
});

const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** Command lines a real client might send (without CRLF). */
const validCommand: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    'EHLO fuzz.test',
    'HELO fuzz.test',
    'MAIL FROM:<a@fuzz.test>',
    'MAIL FROM:<>',
    'MAIL FROM:<a@fuzz.test> SIZE=100 BODY=8BITMIME',
    'MAIL FROM:<a@fuzz.test> RET=HDRS ENVID=x+2By SMTPUTF8',
    'MAIL FROM:<a@fuzz.test> BODY=BINARYMIME',
    'RCPT TO:<bob@localhost>',
    'RCPT TO:<x@routed.test>',
    'RCPT TO:<x@routed.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;x@routed.test',
    'RCPT TO:<evil@elsewhere.test>',
    'RCPT TO:<postmaster>',
    'DATA',
    'RSET',
    'NOOP',
    'QUIT',
    'VRFY bob',
    'EXPN list',
    'HELP',
    'STARTTLS',
    'ETRN example.test',
    `AUTH PLAIN ${b64('\0alice\0s3cret-pw')}`,
    `AUTH PLAIN ${b64('\0alice\0wrong')}`,
    'AUTH LOGIN',
    'AUTH CRAM-MD5',
    'AUTH PLAIN',
    '*',
    'BDAT 0 LAST',
  ),
  fc.integer({ min: 0, max: 3000 }).map((n) => `BDAT ${n}`),
  fc.integer({ min: 0, max: 3000 }).map((n) => `BDAT ${n} LAST`),
  fc.string({ maxLength: 40 }).map((s) => `MAIL FROM:<${s}>`),
  fc.string({ maxLength: 40 }).map((s) => `RCPT TO:<${s}>`),
  fc.string({ maxLength: 40 }).map((s) => `EHLO ${s}`),
);

/** A piece of a session: a command line, a body, raw bytes, or an oversized line. */
const piece: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 8, arbitrary: validCommand.map((c) => Buffer.from(`${c}\r\n`)) },
  // mutated valid command: a byte inserted/replaced, case flipped, line ending wrong
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        validCommand,
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        fc.constantFrom('\r\n', '\n', '\r', '', '\r\r\n', '\0\r\n'),
      )
      .map(([c, at, byte, eol]) => {
        const b = Buffer.from(c);
        if (b.length > 0) b[at % b.length] = byte;
        return Buffer.concat([b, Buffer.from(eol)]);
      }),
  },
  // a message body with dot-stuffing edge cases, ended or not
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.array(fc.constantFrom('Subject: x', '.', '..', '.x', '', 'a\0b', 'é', 'x'.repeat(1200)), {
          maxLength: 8,
        }),
        fc.boolean(),
      )
      .map(([lines, end]) => Buffer.from(`${lines.join('\r\n')}\r\n${end ? '.\r\n' : ''}`)),
  },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  // oversized lines (command line limit 512, SASL 12288, data line 1000)
  {
    weight: 1,
    arbitrary: fc.integer({ min: 400, max: 70_000 }).map((n) => Buffer.from(`${'A'.repeat(n)}\r\n`)),
  },
  // a pipelining flood of one command
  {
    weight: 1,
    arbitrary: fc
      .tuple(validCommand, fc.integer({ min: 10, max: 300 }))
      .map(([c, n]) => Buffer.from(`${c}\r\n`.repeat(n))),
  },
);

interface Outcome {
  out: string;
  closed: boolean;
}

/** Runs one connection: greeting, the stream in random chunks, then a half-close (or a QUIT). */
async function runStream(chunks: Uint8Array[], halfClose: boolean): Promise<Outcome> {
  const c = await RawClient.connect(mta.port);
  await c.waitFor(/^220 .*\r\n/, 3000);
  for (const ch of chunks) {
    c.write(ch);
    if (ch.length > 1000) await new Promise((r) => setImmediate(r));
  }
  // Either half-close right away, or QUIT first and half-close shortly after (QUIT may be read as
  // message data). The server must end every connection once the client has ended its side.
  let closed = false;
  if (!halfClose) {
    c.write('\r\nQUIT\r\n');
    closed = await c.waitClosed(150);
  }
  c.socket.end();
  const closedAfterEnd = closed || (await c.waitClosed(5000));
  c.destroy();
  return { out: c.out, closed: closedAfterEnd };
}

function check(o: Outcome, what: unknown): void {
  const problems = replyProblems(o.out);
  assert.deepEqual(
    problems,
    [],
    `bad server output for ${JSON.stringify(what).slice(0, 300)}:\n${o.out.slice(0, 2000)}`,
  );
  assert.ok(o.closed, `connection was not closed after the client ended it:\n${o.out.slice(-500)}`);
  assert.deepEqual(unhandled.errors, [], 'an unhandled rejection or exception happened');
}

describe('SMTP server fuzzing', () => {
  test('mutated and random command streams get only RFC replies, and every connection ends', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(piece, { minLength: 1, maxLength: 25 }),
        fc.boolean(),
        async (pieces, halfClose) => {
          check(
            await runStream(pieces, halfClose),
            pieces.map((p) => Buffer.from(p).toString('latin1')),
          );
        },
      ),
      { numRuns: RUNS, interruptAfterTimeLimit: 15_000, ...REPLAY },
    );
  });

  test('a valid transaction split at random byte boundaries still succeeds', async () => {
    const session = Buffer.from(
      'EHLO fuzz.test\r\nMAIL FROM:<a@fuzz.test>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\nSubject: split\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n',
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.nat({ max: session.length }), { maxLength: 12 }), async (cuts) => {
        const points = [...new Set(cuts)].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let prev = 0;
        for (const p of [...points, session.length]) {
          chunks.push(session.subarray(prev, p));
          prev = p;
        }
        const c = await RawClient.connect(mta.port);
        for (const ch of chunks) {
          c.write(ch);
          await new Promise((r) => setImmediate(r));
        }
        await c.waitClosed(5000);
        c.destroy();
        assert.deepEqual(replyProblems(c.out), []);
        assert.match(c.out, /\r\n250 2\.0\.0 [^\r]*\r\n221 /, c.out);
      }),
      { numRuns: Math.min(RUNS, 40) },
    );
  });

  test('BDAT chunks whose announced size is wrong never desynchronise into a crash', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 2000 }), fc.boolean()),
          { minLength: 1, maxLength: 5 },
        ),
        fc.boolean(),
        async (chunks, halfClose) => {
          const parts: Uint8Array[] = [
            Buffer.from('EHLO fuzz.test\r\nMAIL FROM:<a@fuzz.test>\r\nRCPT TO:<bob@localhost>\r\n'),
          ];
          for (const [announced, actual, last] of chunks) {
            parts.push(
              Buffer.from(`BDAT ${announced}${last ? ' LAST' : ''}\r\n`),
              Buffer.alloc(actual, 0x61),
            );
          }
          check(await runStream(parts, halfClose), chunks);
        },
      ),
      { numRuns: Math.min(RUNS, 60), interruptAfterTimeLimit: 10_000 },
    );
  });

  test('a client that half-closes mid-command or mid-data is cleaned up', async () => {
    for (const partial of [
      'EHL',
      'MAIL FROM:<a@b',
      'EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\nhalf a bo',
      'EHLO x\r\nAUTH LOGIN\r\n',
    ]) {
      const o = await runStream([Buffer.from(partial)], true);
      check(o, partial);
    }
    // The listener forgets every connection it had.
    const conns = mta.daemon.listeners[0]!.connections;
    // (A condition with a generous deadline: on a loaded machine the last close can take a while.)
    for (let i = 0; i < 500 && conns.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(conns.size, 0);
  });

  test('heap stays bounded over many hostile connections', async () => {
    const stream = [
      Buffer.from(
        `EHLO x\r\n${'NOOP\r\n'.repeat(200)}MAIL FROM:<a@x>\r\nRCPT TO:<bob@localhost>\r\nDATA\r\n`,
      ),
      Buffer.alloc(20_000, 0x41),
      Buffer.from(`${'B'.repeat(80_000)}\r\n`),
    ];
    for (let i = 0; i < 20; i++) await runStream(stream, true);
    const h0 = settledHeap();
    for (let i = 0; i < 150; i++) await runStream(stream, i % 2 === 0);
    const h1 = settledHeap();
    const growth = h1 - h0;
    assert.ok(
      growth < 8 * 1024 * 1024,
      `heap grew by ${(growth / 1048576).toFixed(1)} MiB over 150 connections`,
    );
    assert.deepEqual(unhandled.errors, []);
  });
});
