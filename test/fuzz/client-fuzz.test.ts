// Client-side fuzzing: a malicious SMTP server (a raw net server on loopback) answers the real
// SmtpClient with garbage greetings, malformed, oversized or endless multi-line replies, replies
// without CRLF, silence, and replies after it closed. Properties: the client always settles within
// its timeouts (no hang), fails with an MtaError that is transient (a deferral) whenever the peer
// misbehaved, never reports such a message delivered, has no unhandled rejection, and its memory
// stays bounded even when the peer never stops talking.
// Fails: with the scripted behaviour and what the client did.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { MtaError } from '../../src/errors.js';
import { SmtpClient } from '../../src/smtp/client/index.js';
import { settledHeap, watchUnhandled } from './harness.js';

type Script = (sock: net.Socket) => void;

let unhandled: ReturnType<typeof watchUnhandled>;
before(() => {
  unhandled = watchUnhandled();
});
after(() => unhandled.stop());

const TIMEOUTS = {
  connect: 1000,
  greeting: 400,
  command: 400,
  mail: 400,
  rcpt: 400,
  dataStart: 400,
  dataBlock: 400,
  dataEnd: 400,
  quit: 200,
};

/**
 * Writes `chunk` for as long as the socket is open (an endless reply): 64 KiB per event-loop turn,
 * so the peer's loop keeps running (small synchronous writes would fill the kernel buffer in a
 * busy loop and measure the test, not the client).
 */
function flood(sock: net.Socket, chunk: string): void {
  const big = chunk.repeat(Math.max(1, Math.floor(65536 / chunk.length)));
  const pump = (): void => {
    if (sock.destroyed || !sock.writable) return;
    if (sock.write(big)) setImmediate(pump);
    else sock.once('drain', pump);
  };
  pump();
}

/** Calls `onLine` for every line the client sends. */
function onLines(sock: net.Socket, onLine: (line: string) => void): void {
  let buf = '';
  sock.setEncoding('latin1');
  sock.on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 2);
      onLine(l);
    }
  });
}

interface Result {
  kind: 'connect-failed' | 'sent';
  error?: unknown;
  statuses?: string[];
  ms: number;
}

/** Runs the client (connect, one message, quit) against a server following `script`. */
async function against(script: Script): Promise<Result> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    script(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const t0 = Date.now();
  let result: Result;
  try {
    const client = await SmtpClient.connect('127.0.0.1', port, {
      name: 'client.test',
      timeouts: TIMEOUTS,
      tls: { mode: 'none' },
    });
    const data = [Buffer.from('Subject: x\r\n\r\nhello\r\n')];
    const r = await client.sendMessage({
      sender: 'a@example.org',
      recipients: [{ address: 'b@example.net' }],
      size: data[0]!.length,
      data,
    });
    await client.quit().catch(() => {});
    client.close();
    result = { kind: 'sent', statuses: r.recipients.map((x) => x.status), ms: Date.now() - t0 };
  } catch (e) {
    result = { kind: 'connect-failed', error: e, ms: Date.now() - t0 };
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  }
  return result;
}

/** The client failed cleanly with a deferral: a transient MtaError, or deferred recipients. */
function assertDeferred(r: Result, what: string): void {
  assert.ok(r.ms < 4000, `${what}: took ${r.ms} ms`);
  if (r.kind === 'connect-failed') {
    assert.ok(r.error instanceof MtaError, `${what}: not an MtaError: ${String(r.error)}`);
    assert.equal((r.error as MtaError).kind, 'transient', `${what}: ${String(r.error)}`);
  } else {
    assert.deepEqual(r.statuses, ['deferred'], what);
  }
  assert.deepEqual(unhandled.errors, [], `${what}: unhandled rejection`);
}

/** A well-behaved server that misbehaves at one command (by verb). */
function misbehaveAt(verb: string, bad: (s: net.Socket) => void): Script {
  return (s) => {
    s.write('220 ok ESMTP\r\n');
    let inData = false;
    onLines(s, (l) => {
      if (inData) {
        if (l !== '.') return;
        inData = false;
        if (verb === '.') return bad(s);
        s.write('250 queued\r\n');
        return;
      }
      const v = l.split(' ')[0]!.toUpperCase();
      if (v === verb) return bad(s);
      if (v === 'EHLO') s.write('250-ok\r\n250 PIPELINING\r\n');
      else if (v === 'DATA') {
        inData = true;
        s.write('354 go\r\n');
      } else if (v === 'QUIT') s.end('221 bye\r\n');
      else s.write('250 ok\r\n');
    });
  };
}

const cases: Array<[string, Script]> = [
  ['garbage greeting', (s) => s.write('\x00\xff garbage \x07\r\n')],
  ['greeting code out of range', (s) => s.write('999 what\r\n')],
  ['greeting without CRLF, then close', (s) => s.end('220 almost')],
  ['silence', () => {}],
  ['endless multi-line greeting', (s) => flood(s, '220-more\r\n')],
  ['endless greeting line without CRLF', (s) => flood(s, 'x'.repeat(4096))],
  ['oversized greeting line', (s) => s.write(`220 ${'y'.repeat(100_000)}\r\n`)],
  ['multi-line reply whose code changes', misbehaveAt('EHLO', (s) => s.write('250-a\r\n354 b\r\n'))],
  ['endless EHLO reply', misbehaveAt('EHLO', (s) => flood(s, '250-AUTH PLAIN\r\n'))],
  ['MAIL reply then close', misbehaveAt('MAIL', (s) => s.end('250 ok\r\n'))],
  ['RCPT reply that never comes', misbehaveAt('RCPT', () => {})],
  ['RCPT answered by garbage', misbehaveAt('RCPT', (s) => s.write('hello there\r\n'))],
  ['DATA answered 250 instead of 354', misbehaveAt('DATA', (s) => s.write('250 sure\r\n'))],
  ['end of data answered with an endless reply', misbehaveAt('.', (s) => flood(s, '250-queued\r\n'))],
  ['end of data: reset instead of a reply', misbehaveAt('.', (s) => s.resetAndDestroy())],
  ['end of data: reply without CRLF then close', misbehaveAt('.', (s) => s.end('250 queued'))],
  ['two replies to one command (unsolicited)', misbehaveAt('MAIL', (s) => s.write('250 ok\r\n421 bye\r\n'))],
];

describe('SMTP client against a malicious server', () => {
  for (const [name, script] of cases) {
    test(`${name}: the client defers cleanly and does not hang`, async () => {
      assertDeferred(await against(script), name);
    });
  }

  test('replies ended by a bare LF are tolerated, as the Postfix client does', async () => {
    const r = await against(misbehaveAt('EHLO', (s) => s.write('250-a\n250 b\n')));
    assert.deepEqual(r.statuses, ['delivered']);
  });

  test('random reply streams never make the client hang, crash or report a delivery it did not get', async () => {
    const replyLine = fc.oneof(
      fc.constantFrom(
        '250 ok',
        '250-ok',
        '220 hi',
        '354 go',
        '421 bye',
        '451 later',
        '550 no',
        '334 ',
        '221 bye',
      ),
      fc
        .tuple(
          fc.integer({ min: 0, max: 999 }),
          fc.constantFrom(' ', '-', '', 'x'),
          fc.string({ maxLength: 30 }),
        )
        .map(([c, sep, t]) => `${c}${sep}${t}`),
      fc.string({ maxLength: 60 }),
      fc.integer({ min: 2000, max: 20_000 }).map((n) => `250 ${'z'.repeat(n)}`),
    );
    const answer = fc.record({
      lines: fc.array(replyLine, { maxLength: 4 }),
      eol: fc.constantFrom('\r\n', '\n', ''),
      close: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(answer, fc.array(answer, { maxLength: 8 }), async (greeting, answers) => {
        let i = 0;
        let malformed = false;
        const say = (s: net.Socket, a: typeof greeting): void => {
          if (a.lines.length === 0 || a.eol !== '\r\n' || a.close) malformed = true;
          for (const l of a.lines) if (!/^[2-5]\d\d[ -]/.test(l)) malformed = true;
          s.write(a.lines.map((l) => l + a.eol).join(''));
          if (a.close) s.end();
        };
        const r = await against((s) => {
          say(s, greeting);
          onLines(s, () => {
            const a = answers[i++];
            if (a === undefined) s.end();
            else say(s, a);
          });
        });
        assert.ok(r.ms < 4000, `took ${r.ms} ms`);
        if (r.kind === 'connect-failed') assert.ok(r.error instanceof MtaError, String(r.error));
        assert.deepEqual(unhandled.errors, []);
        // A delivery needs at least greeting, EHLO, MAIL, RCPT, DATA, end-of-data answers.
        if (r.statuses?.includes('delivered'))
          assert.ok(answers.length >= 5 && !greeting.close, JSON.stringify({ greeting, answers, malformed }));
      }),
      { numRuns: 120, interruptAfterTimeLimit: 15_000 },
    );
  });

  test('memory stays bounded against peers that never stop talking', async () => {
    const endless: Script[] = [
      (s) => flood(s, '220-more\r\n'),
      (s) => flood(s, 'x'.repeat(4096)),
      misbehaveAt('EHLO', (s) => flood(s, '250-X\r\n')),
    ];
    for (const e of endless) await against(e);
    const h0 = settledHeap();
    for (let i = 0; i < 30; i++) for (const e of endless) assertDeferred(await against(e), `endless #${i}`);
    const growth = settledHeap() - h0;
    assert.ok(growth < 4 * 1024 * 1024, `heap grew by ${(growth / 1048576).toFixed(1)} MiB`);
  });
});
