// What a client was told 250 is delivered, once, even when `logmta serve` is SIGKILLed the moment
// the 250 reaches the client (DESIGN rule 1). The next hop is a sink that defers every RCPT while
// the first daemon runs (so nothing can be delivered before the kill and come again after it);
// the daemon is restarted on the same data, the sink accepts, `logmta queue flush` makes the
// deferred mail due, and each acknowledged message must arrive exactly once, byte for byte.
// Two clients: swaks (the kill comes after it has quit) and a raw pipelined client whose 250 is
// followed by the SIGKILL in the same turn of the event loop.
// Fails: naming the message that was lost, duplicated or altered.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  codeOf,
  makeTempDir,
  needTools,
  runLogmta,
  runTool,
  SmtpChat,
  type SpawnedDaemon,
  spawnDaemon,
  waitFor,
} from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';

const dir = makeTempDir('logmta-ack-kill-');
const daemons: SpawnedDaemon[] = [];
let deferring = true;
let sink: SmtpSink | undefined;

after(async () => {
  for (const d of daemons) d.kill('SIGKILL');
  await Promise.all(daemons.map((d) => d.exited));
  await sink?.close();
  rmSync(dir, { recursive: true, force: true });
});

const toml = (port: number): string => `
local = []
[smtp]
relay_networks = ["127.0.0.0/8"]
[[route]]
domain = "*"
host = "127.0.0.1:${port}"
[queue]
retry = ["1h"]
`;

test('mail acknowledged with 250 right before a SIGKILL is delivered once after the restart', async () => {
  sink = await SmtpSink.start({
    pipelining: true,
    rcptReply: () => (deferring ? '451 4.3.0 not yet' : undefined),
  });
  const cfg = toml(sink.port);
  const first = await spawnDaemon({ dir, toml: cfg });
  daemons.push(first);
  const sent = new Map<string, string>();

  const swaks = needTools('swaks');
  if (swaks === false) {
    // swaks ends the data with CRLF "." CRLF itself (and stuffs the dot line).
    const body = 'Subject: by swaks\r\nX-Tag: ack-swaks\r\n\r\nline\r\n.dot line';
    const r = await runTool(
      'swaks',
      [
        '--server',
        `127.0.0.1:${first.port}`,
        '--from',
        'a@example.org',
        '--to',
        'one@remote.test',
        '--data',
        '-',
      ],
      { input: body },
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /<- {2}250 2\.0\.0 Ok: queued as /);
    sent.set('ack-swaks', `${body}\r\n`);
  }

  const body = 'Subject: raw\r\nX-Tag: ack-raw\r\n\r\n..stuffed\r\nlast\r\n';
  const { chat } = await SmtpChat.open(first.port);
  chat.send(`EHLO raw.test\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<two@remote.test>\r\nDATA\r\n`);
  assert.deepEqual((await chat.read(4)).map(codeOf), ['250', '250 2.1.0', '250 2.1.5', '354']);
  chat.send(`${body}.\r\n`);
  const [ack = ''] = await chat.read(1);
  first.kill('SIGKILL'); // in the same turn as the 250: nothing more happens in the daemon
  assert.match(ack, /^250 2\.0\.0 Ok: queued as /);
  sent.set('ack-raw', body.replace('\r\n..stuffed', '\r\n.stuffed'));
  chat.close();
  assert.equal((await first.exited).signal, 'SIGKILL');

  deferring = false;
  const second = await spawnDaemon({ dir, toml: cfg });
  daemons.push(second);
  const flush = await runLogmta(['queue', 'flush', '--config', join(dir, 'logmta.toml')]);
  assert.equal(flush.code, 0, flush.stderr);
  const got = (tag: string) => sink?.transactions.filter((t) => t.data.includes(`X-Tag: ${tag}\r\n`)) ?? [];
  await waitFor(
    () => [...sent.keys()].every((t) => got(t).length > 0),
    'every acknowledged message at the sink',
  );
  // Every recipient's final outcome is logged once its delivery is durable: then nothing more
  // can come for these messages.
  await waitFor(
    () => (second.stdout().match(/"msg":"delivered"/g) ?? []).length >= sent.size,
    'the delivered outcomes',
  );
  for (const [tag, text] of sent) {
    const copies = got(tag);
    assert.equal(copies.length, 1, `${tag} arrived ${copies.length} times`);
    const data = copies[0]?.data.toString('latin1') ?? '';
    // Our Received: header, then the message exactly as the client meant it.
    assert.equal(data.slice(data.indexOf(text.slice(0, 12))), text, tag);
  }
  await second.stop();
});
