// The SMTP sessions in a worker thread of their own (smtp.session_thread = true), as a customer
// and a postmaster meet them: a real `logmta serve`, mail taken by the thread and made durable
// by the main thread before its 250, ETRN answered through the thread, a SIGKILL between the
// mail's arrival and the ETRN, relay control and the queue's refusals given by the thread.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SmtpChat, waitFor } from '../support/daemon.js';
import { sendMail } from '../support/inject.js';
import { logCounter } from './traffic-kit.js';
import { type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();

async function setup(extra = ''): Promise<{ s: Stage; host: CustomerHost }> {
  const host = await scene.customer();
  const s = await scene.stage({
    toml: `
[smtp]
session_thread = true
max_message_size = 20000
[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${host.port}"
probe_interval = "1h"
[[route]]
domain = "routed.example"
host = "127.0.0.1:${host.port}"
${extra}`,
  });
  return { s, host };
}

/** Lines of a fresh SMTP conversation: the greeting, then each command's reply (first line). */
async function talk(port: number, commands: string[]): Promise<string[]> {
  const c = await SmtpChat.connect(port);
  try {
    const out = [(await c.read(1))[0] ?? ''];
    for (const cmd of commands) {
      const r = await c.ask(`${cmd}\r\n`, 1);
      out.push(r[0] ?? '');
    }
    return out;
  } finally {
    c.close();
  }
}

/** Waits until the daemon's log (written every 100 ms) has a line matching `re`. */
async function logged_(s: Stage, re: RegExp): Promise<void> {
  await waitFor(() => re.test(s.daemon.stdout()), `a log line ${re}`, 5_000);
}

describe('SMTP sessions in their own thread', () => {
  test('host down at arrival, SIGKILL, host up, ETRN: every message in the mailbox exactly once', async () => {
    const { s, host } = await setup();
    await logged_(s, /"thread":\d+,"listeners":1,"msg":"session thread started"/);
    const m = Array.from({ length: 8 }, (_, i) => `u${i}@branch.example`);
    await s.send(m);
    await s.waitHeld('branch.example', 8);
    await s.restart('SIGKILL');
    await logged_(s, /session thread started/);
    await s.waitHeld('branch.example', 8);
    await host.up();
    assert.equal(await s.etrn('branch.example'), '253 2.0.0 OK, 8 pending messages for node branch.example started');
    await host.waitFor(8);
    await s.waitHeld('branch.example', 0);
    const got = host.recipients();
    assert.deepEqual([...got].sort(), [...m].sort(), 'each acknowledged message once');
    assert.match(await s.etrn('branch.example'), /^25[01] /, 'a second ETRN finds nothing new');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(host.recipients().length, 8);
  });

  test('relay control, size limit and unknown commands are answered in the thread', async () => {
    const { s } = await setup();
    // A [[route]] is where mail goes, never a permission; ETRN domains are taken from anyone.
    const r = await talk(s.port, [
      'EHLO outside.test',
      'MAIL FROM:<a@outside.test>',
      'RCPT TO:<x@routed.example>',
      'RCPT TO:<x@branch.example>',
      'RSET',
      'MAIL FROM:<a@outside.test> SIZE=999999',
      'BOGUS',
      'QUIT',
    ]);
    assert.match(r[0]!, /^220 /);
    assert.match(r[3]!, /^554 5\.7\.1 /, 'a routed domain is not relayable');
    assert.match(r[4]!, /^250 /, 'an ETRN domain is taken');
    assert.match(r[6]!, /^552 /, 'SIZE over the limit refused at MAIL');
    assert.match(r[7]!, /^500 /);
  });

  test('the thread’s mail is listed by the queue tools with its client', async () => {
    const { s } = await setup();
    await s.send(['v@branch.example']);
    await s.waitHeld('branch.example', 1);
    await logged_(s, /"msg":"received"/);
    const received = s.daemon
      .stdout()
      .split('\n')
      .filter((l) => l.includes('"msg":"received"'));
    assert.equal(received.length, 1);
    assert.match(received[0]!, /"source":"smtp"/);
    assert.match(received[0]!, /"client":"127\.0\.0\.1"/);
  });

  test('a client sending in a loop through 6 SIGHUPs: never refused or reset, every message taken held once', async () => {
    const { s } = await setup();
    const logged = logCounter(s.daemon);
    await logged_(s, /session thread started/);
    const port = s.port;
    let stop = false;
    const sent: string[] = [];
    const failures: string[] = [];
    let retried = 0;
    const sender = (async () => {
      for (let i = 0; !stop; i++) {
        const to = `r${i}@branch.example`;
        try {
          await sendMail(port, { from: 'loop@sender.test', to: [to], subject: `n ${i}` });
          sent.push(to);
        } catch (e) {
          // A session open when the reload stops the old daemon is told 421 (a client retries
          // later, as from any MTA that stops); what must never happen is a refused or reset
          // connection, or a message lost or taken twice.
          const x = e as { code?: string; message?: string; smtp?: { code?: number } };
          if (x.smtp?.code === 421 || /\b421\b/.test(x.message ?? '')) retried++;
          else failures.push(`${to}: ${x.code ?? x.message}`);
        }
      }
    })();
    for (let k = 1; k <= 6; k++) {
      await waitFor(() => sent.length >= k * 5, `${k * 5} messages sent`, 15_000);
      const before = logged('reloaded');
      s.daemon.kill('SIGHUP');
      await waitFor(() => logged('reloaded') > before, `reload ${k} done`, 30_000);
    }
    await waitFor(() => sent.length >= 35, '5 more messages after the last reload', 15_000);
    stop = true;
    await sender;
    assert.deepEqual(failures, [], 'no connection refused or reset during the reloads');
    console.log(`# ${sent.length} messages taken, ${retried} told 421 at a reload`);
    await waitFor(() => logged('session thread started') >= 6, 'the restarts logged', 5_000);
    const threads = [...s.daemon.stdout().matchAll(/"thread":(\d+),"listeners":\d+,"msg":"session thread started"/g)];
    assert.equal(threads.length, 7, 'started, and once again at each reload');
    assert.equal(new Set(threads.map((m) => m[1])).size, 1, 'the same thread each time, restarted in place');
    await s.waitHeld('branch.example', sent.length);
  });
});
