// Pipelining as real clients do it, against a `logmta serve` child process: a whole group (MAIL,
// several RCPTs with some refused, DATA, the message) in one write, the next transaction or QUIT
// behind the final dot, a client that half-closes its side after its last command and reads the
// replies to the end (`printf ... | nc -N`, Python's shutdown(SHUT_WR)), commands split at every
// byte boundary, and swaks --pipeline with refused recipients. What is checked is what the client
// and the recipients end up with: the replies in order and in number, the message in the
// accepted recipients' Maildirs exactly once, nothing for the refused ones.
// Fails: naming the replies received or the Maildir that holds the wrong messages.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  codeOf,
  makeTempDir,
  maildirMessages,
  SmtpChat,
  type SpawnedDaemon,
  spawnDaemon,
  waitForMaildir,
} from '../support/daemon.js';

const TOML = `
[smtp]
max_recipients = 100
[[local]]
domain = "localhost"
users = ["ann", "ben", "cat", "dan", "eve", "fay", "gus", "hal"]
`;

let d: SpawnedDaemon;
const dir = makeTempDir('logmta-pipe-');
const open: SmtpChat[] = [];

const box = (u: string): string => `${d.dir}/data/mail/${u}`;
const codes = (rs: string[]): string[] => rs.map(codeOf);

async function chat(): Promise<SmtpChat> {
  const { chat: c, greeting } = await SmtpChat.open(d.port);
  open.push(c);
  assert.match(greeting, /^220 /);
  return c;
}

/** Every reply the server sends until it closes the connection. */
async function readToClose(c: SmtpChat): Promise<string[]> {
  await c.waitClosed();
  return c.read(1_000, 1);
}

/** The messages holding `tag` in a user's Maildir. */
const withTag = (user: string, tag: string): string[] =>
  maildirMessages(box(user)).filter((m) => m.includes(tag));

describe('pipelining as real clients do it (logmta serve)', () => {
  before(async () => {
    d = await spawnDaemon({ dir, toml: TOML });
  });
  after(async () => {
    for (const c of open) c.close();
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a half-closing client gets every reply of its pipelined transaction, and the message once', async () => {
    const c = await chat();
    c.send(
      'EHLO half.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<ann@localhost>\r\nRCPT TO:<zed@localhost>\r\n' +
        'DATA\r\nSubject: half-close\r\n\r\nX-Tag: half-1\r\n.\r\nQUIT\r\n',
    );
    c.socket.end();
    const r = await readToClose(c);
    assert.deepEqual(codes(r), [
      '250',
      '250 2.1.0',
      '250 2.1.5',
      '550 5.1.1',
      '354',
      '250 2.0.0',
      '221 2.0.0',
    ]);
    const [m] = await waitForMaildir(box('ann'));
    assert.ok(m?.includes('half-1'));
  });
});
