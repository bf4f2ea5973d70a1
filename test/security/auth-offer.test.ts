// Whether a real `logmta serve` offers AUTH, as a scanner or a mail client finds out: without any
// [[user]] account it offers none (not in EHLO, not in HELP) and AUTH gets 503; with an account it
// offers it and a right password gets 235. Before, a default install advertised AUTH with nothing
// to authenticate against.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { codeOf, SmtpChat, type SpawnedDaemon, spawnDaemon } from '../support/daemon.js';

const daemons: SpawnedDaemon[] = [];
after(async () => {
  for (const d of daemons) await d.stop();
});

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Each command's whole reply (every line of a multi-line one), one command at a time. */
async function session(port: number, lines: string[]): Promise<string[]> {
  const { chat } = await SmtpChat.open(port);
  try {
    const out: string[] = [];
    for (const l of lines) {
      chat.send(`${l}\r\n`);
      out.push(...(await chat.read(1)));
    }
    return out;
  } finally {
    chat.close();
  }
}

test('AUTH is offered only when there are accounts', async () => {
  const none = await spawnDaemon({ toml: '' });
  daemons.push(none);
  const [ehlo, help, auth] = await session(none.port, [
    'EHLO scanner.test',
    'HELP',
    `AUTH PLAIN ${b64('\0u\0p')}`,
  ]);
  assert.doesNotMatch(ehlo ?? '', /AUTH/);
  assert.doesNotMatch(help ?? '', /AUTH|STARTTLS|ETRN/);
  assert.equal(codeOf(auth ?? ''), '503 5.5.1');

  const some = await spawnDaemon({ toml: '[[user]]\nname = "alice"\npassword = "secret-pw"\n' });
  daemons.push(some);
  const [ehlo2, ok] = await session(some.port, [
    'EHLO client.test',
    `AUTH PLAIN ${b64('\0alice\0secret-pw')}`,
  ]);
  assert.match(ehlo2 ?? '', /AUTH PLAIN LOGIN CRAM-MD5/);
  assert.equal(codeOf(ok ?? ''), '235 2.7.0');
});
