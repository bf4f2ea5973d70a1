// The SMTP session thread dying under a running daemon (smtp.session_thread): the main thread
// logs it and starts a new thread a second later on the same ports, and mail flows again with
// nothing lost — in this process, so the new thread loads the modules a second time (a native
// module that cannot be loaded twice, as fs-ext could not, would abort the whole daemon here).
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { startTestDaemon, type TestDaemon, waitFor } from '../support/daemon.js';
import { sendMail } from '../support/inject.js';
import { reservePort } from '../scenarios/kit.js';

let d: TestDaemon | undefined;
afterEach(async () => {
  await d?.stop();
  d = undefined;
});

/** A fixed port (a restarted thread binds what the configuration names; port 0 would move). */
const toml = (port: number) => `
[smtp]
session_thread = true
listen = ["127.0.0.1:${port}"]
[[local]]
domain = "local.test"
`;

const logged = (t: TestDaemon, msg: string) => t.log.filter((l) => l.msg === msg).length;

test('a session thread that dies is started again on the same port, and mail flows again', async () => {
  d = await startTestDaemon({ toml: toml(await reservePort()) });
  const t = d;
  const thread = t.daemon.sessionThread;
  assert.ok(thread, 'the sessions run in their own thread');
  await sendMail(t.port, { from: 'a@sender.test', to: ['one@local.test'] });
  await waitFor(() => logged(t, 'received') === 1, 'the first message');

  // The thread ends as a crash would end it (not through stop()).
  const w = (thread as unknown as { worker: Worker }).worker;
  await w.terminate();
  await waitFor(() => logged(t, 'session thread exited; starting it again') === 1, 'the exit logged');
  await waitFor(() => logged(t, 'session thread started') === 2, 'a new thread started', 10_000);
  assert.notEqual(
    t.log.filter((l) => l.msg === 'session thread started')[1]?.fields.thread,
    w.threadId,
    'a new thread',
  );

  await sendMail(t.port, { from: 'a@sender.test', to: ['two@local.test'] });
  await waitFor(() => logged(t, 'received') === 2, 'the message after the restart');
  await waitFor(() => logged(t, 'delivered') === 2, 'both delivered to the mailboxes');
});
