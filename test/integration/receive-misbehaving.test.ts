// Clients that misbehave, against a `logmta serve` child process: an EHLO name that would make
// the greeting line longer than RFC 5321 allows, NUL and 8-bit bytes in commands, and many
// clients that vanish in the middle of a message (DATA, a BDAT chunk, a half-close) — after which
// nothing is stored or delivered and the daemon holds no more descriptors than before.
// Fails: naming the reply line, the stray message, or the descriptors that were left open.

import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { codeOf, maildirMessages, type SmtpChat, waitFor } from '../support/daemon.js';
import { type ServedSuite, serveSuite } from '../support/served.js';

let srv: ServedSuite;

const TOML = `
[smtp]
max_connections_per_ip = 200
[[local]]
domain = "localhost"
users = ["ann"]
`;

const codes = (rs: string[]): string[] => rs.map(codeOf);
const box = (u: string): string => join(srv.dir, 'data', 'mail', u);

const chat = (): Promise<SmtpChat> => srv.chat();

/** The daemon's open descriptors (Linux): all of them, and its sockets alone. */
function fds(): { all: number; sockets: number } {
  const dir = `/proc/${srv.daemon.child.pid}/fd`;
  let sockets = 0;
  const names = readdirSync(dir);
  for (const n of names) {
    try {
      if (readlinkSync(join(dir, n)).startsWith('socket:')) sockets++;
    } catch {
      // closed between the listing and the read
    }
  }
  return { all: names.length, sockets };
}

describe('misbehaving clients (logmta serve)', () => {
  srv = serveSuite('logmta-misbehave-', TOML);

  test('a 500-octet EHLO name: every reply line stays within 512 octets (RFC 5321 4.5.3.1.5)', async () => {
    const c = await chat();
    const name = 'h'.repeat(500);
    const [ehlo = ''] = await c.read(0);
    assert.equal(ehlo, '');
    c.send(`EHLO ${name}\r\n`);
    const [reply = ''] = await c.read(1);
    const lines = reply.split('\r\n').slice(0, -1);
    assert.ok(lines.length > 5, reply);
    for (const l of lines)
      assert.ok(Buffer.byteLength(l) + 2 <= 512, `${Buffer.byteLength(l) + 2} octets: ${l}`);
    assert.ok(lines[0]?.startsWith('250-mx.test Hello hhhh'));
    assert.deepEqual(codes(await c.ask('NOOP\r\n')), ['250 2.0.0']);
  });

  test('NUL in a command is refused as unrecognized, 8-bit addresses need SMTPUTF8; the session goes on', async () => {
    const c = await chat();
    await c.ask('EHLO bytes.test\r\n');
    const r = await c.ask(
      Buffer.concat([
        Buffer.from('MAIL FROM:<a\0b@example.org>\r\n'),
        Buffer.from('MAIL FROM:<jürgen@example.org>\r\n'),
        Buffer.from('MAIL FROM:<jürgen@example.org> SMTPUTF8\r\n'),
        Buffer.from('RCPT TO:<ann@localhost>\r\n'),
        Buffer.from('RSET\r\n'),
      ]),
      5,
    );
    assert.deepEqual(r.map(codeOf), ['500 5.5.2', '553 5.6.7', '250 2.1.0', '250 2.1.5', '250 2.0.0']);
  });

  test('clients vanishing mid-DATA, mid-BDAT chunk or half-closing mid-message leave no message and no descriptor', {
    skip: process.platform === 'linux' ? false : 'needs /proc (Linux)',
  }, async () => {
    const start = 'EHLO gone.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<ann@localhost>\r\n';
    const round = async (i: number): Promise<void> => {
      // Mid-DATA, with a body large enough to be streamed to the queue (> 1 MiB).
      const a = await chat();
      a.send(`${start}DATA\r\n`);
      await a.read(4);
      const big = `Subject: gone ${i}\r\n\r\n${`${'y'.repeat(98)}\r\n`.repeat(12_000)}`;
      await new Promise<void>((res) => a.socket.write(big, () => res()));
      a.close();
      // Mid-BDAT chunk: 100 000 octets announced, 5 000 sent.
      const b = await chat();
      b.send(`${start}BDAT 100000\r\n${'z'.repeat(5_000)}`);
      await b.read(3);
      b.close();
      // A half-close inside the message: answered to there, then closed by the server.
      const h = await chat();
      h.send(`${start}DATA\r\nSubject: half ${i}\r\n\r\nno end\r\n`);
      h.socket.end();
      await h.waitClosed();
    };
    const mine = srv.chats.length;
    const closedAll = async (): Promise<void> => {
      for (const c of srv.chats.slice(mine)) await waitFor(() => c.closed, 'every client closed');
    };
    // A first round opens what the daemon opens lazily (the data lane's segment, ...).
    await round(-1);
    await closedAll();
    const before = fds();
    for (let i = 0; i < 30; i++) await round(i);
    await closedAll();
    // Every connection's socket is closed. Files the daemon opens as its queue grows (a read
    // handle, a spare being zeroed) may add one or two; a descriptor left per connection would
    // add ninety.
    await waitFor(
      () => fds().sockets <= before.sockets && fds().all <= before.all + 3,
      `the daemon's descriptors back to ${JSON.stringify(before)} (now ${JSON.stringify(fds())})`,
    );
    assert.deepEqual(maildirMessages(box('ann')), []);
    assert.doesNotMatch(srv.daemon.stdout(), /"msg":"received"/);
  });
});
