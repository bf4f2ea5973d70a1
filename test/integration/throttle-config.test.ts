// The abuse throttles of the configuration take effect end to end in a running daemon:
// [etrn_limits] requests_per_client limits ETRN per client address (458 beyond it), and
// [smtp] auth_max_failures / auth_failure_delay decide when an address is blocked from AUTH.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SmtpChat, startTestDaemon, type TestDaemon } from '../support/daemon.js';

describe('throttle keys in a running daemon', () => {
  let d: TestDaemon;

  before(async () => {
    d = await startTestDaemon({
      toml: `
[smtp]
auth_max_failures = 2
auth_failure_delay = "0s"
auth_failure_delay_max = "0s"

[[user]]
name = "alice"
password = "right"

[[etrn]]
domain = "branch.example"
host = "127.0.0.1:9"
probe_interval = "1h"

[etrn_limits]
requests_per_client = 1
request_window = "1h"
`,
    });
  });
  after(async () => {
    await d.stop();
  });

  async function chat(localAddress?: string): Promise<SmtpChat> {
    const c = await SmtpChat.connect(d.port, '127.0.0.1', localAddress);
    await c.read(1);
    await c.ask('EHLO client.test\r\n');
    return c;
  }

  test('requests_per_client = 1: the second ETRN from the same address gets 458, another address is not affected', async () => {
    const c = await chat('127.0.0.1');
    assert.deepEqual(await c.ask('ETRN branch.example\r\n'), [
      '251 2.0.0 OK, no messages waiting for node branch.example',
    ]);
    assert.deepEqual(await c.ask('ETRN branch.example\r\n'), [
      '458 4.3.0 Unable to queue messages for node branch.example',
    ]);
    c.close();
    // A new connection from the same address shares the budget.
    const again = await chat('127.0.0.1');
    assert.deepEqual(await again.ask('ETRN branch.example\r\n'), [
      '458 4.3.0 Unable to queue messages for node branch.example',
    ]);
    again.close();
    const other = await chat('127.0.0.2');
    assert.deepEqual(await other.ask('ETRN branch.example\r\n'), [
      '251 2.0.0 OK, no messages waiting for node branch.example',
    ]);
    other.close();
  });

  test('auth_max_failures = 2: the second failed AUTH blocks the address (421), without delay', async () => {
    const bad = Buffer.from('\0alice\0wrong').toString('base64');
    const c = await chat('127.0.0.3');
    const t0 = Date.now();
    assert.match((await c.ask(`AUTH PLAIN ${bad}\r\n`))[0] ?? '', /^535 5\.7\.8 /);
    const second = await c.ask(`AUTH PLAIN ${bad}\r\n`, 2);
    assert.match(second[0] ?? '', /^535 5\.7\.8 /);
    assert.match(second[1] ?? '', /^421 4\.7\.0 /);
    await c.waitClosed();
    assert.ok(Date.now() - t0 < 900, 'auth_failure_delay = 0 answers at once (default is 1 s, then 2 s)');
    // Still blocked on a new connection, even with the right password.
    const good = Buffer.from('\0alice\0right').toString('base64');
    const n = await chat('127.0.0.3');
    assert.match((await n.ask(`AUTH PLAIN ${good}\r\n`))[0] ?? '', /^421 4\.7\.0 /);
    n.close();
    // Another address is not blocked.
    const o = await chat('127.0.0.4');
    assert.match((await o.ask(`AUTH PLAIN ${good}\r\n`))[0] ?? '', /^235 /);
    o.close();
  });
});
