// A milter that is down, or that stops answering, is handled by its default_action, whatever the
// stage: tempfail (the default) answers 451 4.7.1 so the client keeps the message, reject answers
// 550, accept carries on as if the filter were not there. Nothing is ever queued for a message
// the session refused, and the SMTP session never hangs on a silent filter (command_timeout).
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestDaemon, type TestDaemon, waitForMaildir } from '../support/daemon.js';
import { type FakeMilter, startFakeMilter } from '../support/fake-milter.js';
import { sendMessage } from '../support/mail.js';

const message = 'From: a@sender.example\r\nSubject: hi\r\n\r\nbody\r\n';

async function daemonWith(milter: string): Promise<TestDaemon> {
  return startTestDaemon({
    toml: `
[[local]]
domain = "local.test"
maildir = "mail/{user}"
[[milter]]
${milter}
`,
  });
}

describe('milter failures', () => {
  let silent: Server;
  let silentPort = 0;
  const sockets: Socket[] = [];
  const daemons: TestDaemon[] = [];
  before(async () => {
    // Accepts the connection and never says a word: a hung filter.
    silent = createServer((s) => void sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    silentPort = (silent.address() as { port: number }).port;
  });
  after(async () => {
    for (const d of daemons) await d.stop();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  });
  const start = async (m: string) => {
    const d = await daemonWith(m);
    daemons.push(d);
    return d;
  };

  test('an unreachable milter with the default action tempfails MAIL; nothing is queued', async () => {
    const d = await start(`address = "unix:/nonexistent/milter.sock"`);
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['b@local.test'], message });
    assert.match(r.greeting, /^220 /);
    assert.match(r.mail, /^451 4\.7\.1 /);
    assert.equal((await d.daemon.queues.listPieces({}, Date.now())).length, 0);
  });

  test('default_action = "reject" refuses with 550 5.7.1', async () => {
    const d = await start(`address = "unix:/nonexistent/milter.sock"\ndefault_action = "reject"`);
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['b@local.test'], message });
    assert.match(r.mail, /^550 5\.7\.1 /);
  });

  test('default_action = "accept" delivers as if there were no milter', async () => {
    const d = await start(`address = "unix:/nonexistent/milter.sock"\ndefault_action = "accept"`);
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['b@local.test'], message });
    assert.match(r.final ?? '', /^250 /, JSON.stringify(r));
    await waitForMaildir(join(d.dataDir, 'mail', 'b'));
  });

  test('a milter that never answers costs command_timeout, then the default action', async () => {
    const d = await start(`address = "inet:127.0.0.1:${silentPort}"\ncommand_timeout = "1s"`);
    const t0 = Date.now();
    const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['b@local.test'], message });
    const ms = Date.now() - t0;
    assert.match(r.greeting, /^220 /);
    assert.match(r.mail, /^451 4\.7\.1 /);
    assert.ok(ms >= 900 && ms < 8_000, `${ms} ms`);
  });

  test('a milter that stops answering at the end of message costs content_timeout: 451 to the final dot, nothing queued', async () => {
    // Answers every event but the end of message: a filter stuck scanning the content.
    const stuck: FakeMilter = await startFakeMilter({ on: (c) => (c.type === 'eom' ? [] : undefined) });
    try {
      const d = await start(
        `address = "inet:127.0.0.1:${stuck.address.port}"\ncommand_timeout = "30s"\ncontent_timeout = "1s"`,
      );
      const t0 = Date.now();
      const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['c@local.test'], message });
      const ms = Date.now() - t0;
      assert.match(r.mail, /^250 /);
      assert.match(r.data ?? '', /^354 /);
      assert.match(r.final ?? '', /^451 4\.7\.1 /, JSON.stringify(r));
      assert.ok(ms >= 900 && ms < 8_000, `${ms} ms`);
      assert.equal((await d.daemon.queues.listPieces({}, Date.now())).length, 0, 'nothing queued');
    } finally {
      await stuck.close();
    }
  });

  test('a milter that goes away mid-message leaves the client with 451 at the final dot and the next session retries it', async () => {
    let drop = true;
    const m: FakeMilter = await startFakeMilter({
      on: (c) => {
        if (c.type === 'header' && drop) {
          drop = false;
          // The filter's connection dies while it reads the header: no reply, the socket closes.
          setImmediate(() => m.dropAll());
          return [];
        }
        return undefined;
      },
    });
    try {
      const d = await start(`address = "inet:127.0.0.1:${m.address.port}"`);
      const r = await sendMessage(d.port, { from: 'a@sender.example', to: ['e@local.test'], message });
      assert.match(r.final ?? '', /^451 4\.7\.1 /, JSON.stringify(r));
      assert.equal((await d.daemon.queues.listPieces({}, Date.now())).length, 0, 'nothing queued');
      const again = await sendMessage(d.port, { from: 'a@sender.example', to: ['e@local.test'], message });
      assert.match(again.final ?? '', /^250 /, JSON.stringify(again));
      await waitForMaildir(join(d.dataDir, 'mail', 'e'));
    } finally {
      await m.close();
    }
  });
});
