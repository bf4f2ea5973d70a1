// delivery.mx_address_limit against a real `logmta serve` (unbound on loopback, MX hosts on
// port 25 of addresses of their own, test/scenarios/mx-kit.ts): a domain whose first seven MX
// addresses are tarpits (accept, never greet) or refuse connections, and whose eighth would take
// the mail. With the default limit of 5 one attempt tries five addresses and defers the
// recipient, saying the limit left three untried; the addresses beyond it see no connection.
// With the limit raised to 8 the eighth gets the mail. Greeting and connect timeouts are 1 s.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { type MxListener, mxDown, mxSink, mxTarpit } from '../support/mx-hosts.js';
import type { SmtpSink } from '../support/sink.js';
import { mxScenes, mxZone, nthOutcome, outcomes, reports } from './mx-kit.js';

const mx = mxScenes();
const skip = await mx.skip;

interface Hosts {
  /** Preferences 10, 20, 60, 70: tarpits. */
  tarpits: MxListener[];
  /** Preference 80: a sink that takes the mail. */
  good: SmtpSink;
  zone: ReturnType<typeof mxZone>;
}

/** dst.test: tarpits at 10 and 20, refused connections at 30, 40 and 50, tarpits at 60 and 70, a good MX at 80. */
async function hosts(): Promise<Hosts> {
  const tarpits: MxListener[] = [];
  for (let i = 0; i < 4; i++) {
    const t = await mxTarpit();
    mx.later(() => t.close());
    tarpits.push(t);
  }
  const down = [await mxDown(), await mxDown(), await mxDown()];
  const good = await mxSink();
  mx.later(() => good.close());
  const [t1, t2, t3, t4] = tarpits.map((t) => t.host) as [string, string, string, string];
  const zone = mxZone([
    [10, t1],
    [20, t2],
    [30, down[0]!],
    [40, down[1]!],
    [50, down[2]!],
    [60, t3],
    [70, t4],
    [80, good.host],
  ]);
  return { tarpits, good, zone };
}

describe('delivery.mx_address_limit, against logmta serve', { skip }, () => {
  test('eight MX addresses, the first seven tarpits or refusing: with the default limit five are tried and the mail is deferred, saying why; the eighth gets nothing', async () => {
    const h = await hosts();
    const w = await mx.world(h.zone);
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred');
    assert.match(
      String(o.text),
      /3 more MX addresses not tried: the limit is 5 per attempt \(delivery\.mx_address_limit\)/,
    );
    // The five tried are named in the diagnostic; the two tarpits beyond the limit were not asked.
    assert.match(String(o.text), new RegExp(`${h.tarpits[0]!.host}:25 `));
    assert.deepEqual(
      h.tarpits.map((t) => t.connections),
      [1, 1, 0, 0],
    );
    assert.equal(h.good.transactions.length, 0);
    assert.equal(h.good.connections, 0);
    assert.equal(outcomes(w.stage, 'u@dst.test').length, 1);
    assert.equal(reports(w.bounces).length, 0, 'deferred, never bounced');
  });

  test('the same domain with mx_address_limit = 8: every address is tried in order and the eighth gets the mail, once', async () => {
    const h = await hosts();
    const w = await mx.world(h.zone, { delivery: 'mx_address_limit = 8' });
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    await h.good.waitForTransactions(1);
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.deepEqual(
      h.good.transactions.map((t) => t.recipients),
      [['u@dst.test']],
    );
    assert.deepEqual(
      h.tarpits.map((t) => t.connections),
      [1, 1, 1, 1],
    );
  });
});
