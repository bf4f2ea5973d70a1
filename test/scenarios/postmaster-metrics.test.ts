// What a postmaster's dashboard shows after a known sequence of events, scraped from the HTTP
// admin listener of a real `logmta serve`: mail from cron (`logmta sendmail`) and from an SMTP
// client counted by source, delivered / deferred / failed recipients, operator actions, and the
// queue gauges again after a SIGKILL and restart (counters start from zero with the process, as
// Prometheus expects; the gauges come from the recovered queue).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LOGMTA_BIN, runTool } from '../support/daemon.js';
import { sendMail } from '../support/inject.js';
import type { MessageView } from '../../src/queue/index.js';
import { reservePort, scenes } from './kit.js';

const scene = scenes();

/** Every sample of the exposition as "name{labels}" → value. */
async function scrape(port: number): Promise<Map<string, number>> {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(r.status, 200);
  const out = new Map<string, number>();
  for (const line of (await r.text()).split('\n')) {
    const m = /^(logmta_[^ ]+) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

describe('metrics after a known sequence of events', () => {
  test('sendmail counts as local, SMTP as smtp; outcomes, operator actions and queue gauges are exact, also after a restart', async () => {
    const host = await scene.customer();
    const down = await scene.customer();
    await host.up();
    const admin = await reservePort();
    const s = await scene.stage({
      toml: `
[admin]
listen = "127.0.0.1:${admin}"
[smtp]
relay_domains = ["customer.test", "down.test"]
[[route]]
domain = "customer.test"
host = "127.0.0.1:${host.port}"
[[route]]
domain = "down.test"
host = "127.0.0.1:${down.port}"
`,
    });
    const sendmail = (rcpts: string[]) =>
      runTool(process.execPath, [LOGMTA_BIN, 'sendmail', '--config', s.daemon.configFile!, ...rcpts], {
        input: 'Subject: cron\n\nout\n',
      });
    // Two from cron: one delivered, one to the host that is down (two recipients, deferred).
    assert.equal((await sendmail(['a@customer.test'])).code, 0);
    assert.equal((await sendmail(['x@down.test', 'y@down.test'])).code, 0);
    // One over SMTP, to the host that is down.
    await sendMail(s.port, { from: 'app@customer.test', to: ['h@down.test'] });
    await host.waitFor(1);
    await s.waitLanes((l) => (l['retry-300s'] ?? 0) === 2, 'two messages deferred');
    const ms = (await s.admin<{ messages: MessageView[] }>('list')).messages;
    const idOf = (rcpt: string) =>
      ms.find((m) => m.pieces.some((p) => p.recipients.some((r) => r.address === rcpt)))!.id;
    assert.equal((await s.admin<{ done: unknown[] }>('hold', { ids: [idOf('h@down.test')] })).done.length, 1);
    assert.equal(
      (await s.admin<{ done: unknown[] }>('bounce', { ids: [idOf('x@down.test')] })).done.length,
      1,
    );
    // The bounce goes to root@localhost (the cron sender): a local mailbox here.
    await s.waitLanes(
      (l) => Object.entries(l).every(([k, n]) => n === (k === 'hold' ? 1 : 0)),
      'only the held one left',
    );

    const m = await scrape(admin);
    assert.equal(m.get('logmta_messages_received_total{source="local"}'), 2);
    assert.equal(m.get('logmta_messages_received_total{source="smtp"}'), 1);
    assert.equal(m.get('logmta_recipients_total{outcome="deferred"}'), 3);
    assert.equal(m.get('logmta_recipients_total{outcome="failed"}'), 2, 'the operator bounce, per recipient');
    assert.equal(m.get('logmta_operator_actions_total'), 2);
    assert.equal(m.get('logmta_queue_messages'), 1);
    assert.equal(m.get('logmta_operator_held_messages'), 1);
    // The log is buffered (written every 100 ms at the latest): wait for the lines, then read them.
    await s.waitLog('received', 3);
    const received = s.logLines().filter((l) => l.msg === 'received');
    assert.deepEqual(
      received.map((l) => l.source),
      ['local', 'local', 'smtp'],
    );

    await s.restart('SIGKILL');
    const after = await scrape(admin);
    assert.equal(after.get('logmta_queue_messages'), 1);
    assert.equal(after.get('logmta_operator_held_messages'), 1);
    assert.equal(after.get('logmta_messages_received_total{source="local"}') ?? 0, 0);
  });
});
