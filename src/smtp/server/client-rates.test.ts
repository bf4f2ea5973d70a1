import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { FakeClock } from '../../../test/support/clock.js';
import { Harness } from '../../../test/support/session.js';
import { ClientRates, clientKey, type SharedWindowCount } from './client-rates.js';

const codes = Harness.codes;

describe('clientKey', () => {
  test('IPv4 (also IPv4-mapped) is the address; IPv6 is its /64', () => {
    assert.equal(clientKey('192.0.2.7'), '192.0.2.7');
    assert.equal(clientKey('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(clientKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:DB8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
    assert.equal(clientKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(clientKey('::1'), '0:0:0:0::/64');
    assert.equal(clientKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(clientKey('64:ff9b::192.0.2.1'), '64:ff9b:0:0::/64');
  });
});

describe('ClientRates', () => {
  test('at most count events per window; the window opens at the first event and recovers after it', () => {
    const c = new FakeClock();
    const r = new ClientRates(c, { connection: { count: 3, periodMs: 2000 } });
    assert.deepEqual(
      [1, 2, 3, 4].map(() => r.allow('connection', '192.0.2.1')),
      [true, true, true, false],
    );
    assert.equal(r.allow('connection', '192.0.2.2'), true, 'another client has its own window');
    c.advance(1999);
    assert.equal(r.allow('connection', '192.0.2.1'), false, 'still inside the window');
    c.advance(1);
    assert.equal(r.allow('connection', '192.0.2.1'), true, 'a new window after periodMs');
    assert.equal(r.allow('message', '192.0.2.1'), true, 'a kind without a rate is never limited');
  });

  test('exempt clients are never counted; onLimit is told once per window', () => {
    const c = new FakeClock();
    const told: string[] = [];
    const r = new ClientRates(c, {
      message: { count: 1, periodMs: 1000 },
      exempt: (ip) => ip === '127.0.0.1',
      onLimit: (kind, ip) => told.push(`${kind} ${ip}`),
    });
    for (let i = 0; i < 5; i++) assert.equal(r.allow('message', '127.0.0.1'), true);
    assert.equal(r.size('message'), 0);
    assert.deepEqual(
      [1, 2, 3].map(() => r.allow('message', '198.51.100.1')),
      [true, false, false],
    );
    assert.deepEqual(told, ['message 198.51.100.1']);
    c.advance(1000);
    r.allow('message', '198.51.100.1');
    r.allow('message', '198.51.100.1');
    assert.equal(told.length, 2, 'told again in the next window');
  });

  test('a /64 is one client: every address in it shares the window, and costs one entry', () => {
    const c = new FakeClock();
    const r = new ClientRates(c, { recipient: { count: 10, periodMs: 60_000 } });
    const results: boolean[] = [];
    for (let i = 0; i < 1000; i++)
      results.push(r.allow('recipient', `2001:db8:5:6:${i.toString(16)}::1`) === true);
    assert.equal(results.filter(Boolean).length, 10);
    assert.equal(r.size('recipient'), 1);
  });

  test('memory is bounded under many clients: ended windows go first, then the oldest', () => {
    const c = new FakeClock();
    const r = new ClientRates(c, { connection: { count: 1, periodMs: 1000 }, maxClients: 100 });
    for (let i = 0; i < 10_000; i++)
      r.allow('connection', `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    assert.equal(r.size('connection'), 100);
    // The newest clients are still counted (their window is open), the table stays at its cap.
    assert.equal(r.allow('connection', '10.0.39.15'), false);
    c.advance(1000);
    assert.equal(r.allow('connection', '192.0.2.9'), true);
    assert.equal(r.size('connection'), 1, 'windows that ended were dropped to make room');
  });
});

describe('ClientRates with a shared (cluster) count', () => {
  /** A stand-in for Redis: one window per kind and client, or no answer while `down`. */
  function sharedCounter() {
    const counts = new Map<string, number>();
    const state = { down: false, asked: 0 };
    const shared: SharedWindowCount = async (kind, client, rate) => {
      state.asked++;
      if (state.down) return undefined;
      const k = `${kind} ${client}`;
      const n = counts.get(k) ?? 0;
      if (n > rate.count) return n + 1;
      counts.set(k, n + 1);
      return n + 1;
    };
    return { shared, state, counts };
  }

  test("the shared count decides, told once per window; another node's events count too", async () => {
    const { shared, counts } = sharedCounter();
    const told: string[] = [];
    const r = new ClientRates(new FakeClock(), {
      message: { count: 3, periodMs: 60_000 },
      shared,
      onLimit: (kind, ip) => told.push(`${kind} ${ip}`),
    });
    counts.set('message 192.0.2.1', 2); // two MAILs seen by other nodes
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await r.allow('message', '192.0.2.1'));
    assert.deepEqual(got, [true, false, false, false]);
    assert.deepEqual(told, ['message 192.0.2.1']);
    assert.equal(r.size('message'), 0, 'no local window while the cluster counts');
  });

  test('without an answer this node counts alone; exempt clients and unset kinds never ask', async () => {
    const { shared, state } = sharedCounter();
    const r = new ClientRates(new FakeClock(), {
      recipient: { count: 2, periodMs: 60_000 },
      shared,
      exempt: (ip) => ip === '127.0.0.1',
    });
    assert.equal(r.allow('recipient', '127.0.0.1'), true, 'exempt: a plain true, no promise');
    assert.equal(r.allow('connection', '192.0.2.1'), true, 'no rate of that kind: a plain true');
    assert.equal(state.asked, 0);
    state.down = true;
    const got = [];
    for (let i = 0; i < 3; i++) got.push(await r.allow('recipient', '192.0.2.1'));
    assert.deepEqual(got, [true, true, false], "the node's own window, with the full rate");
    state.down = false;
    assert.equal(await r.allow('recipient', '192.0.2.1'), true, 'shared again once Redis answers');
  });

  test('MAIL and RCPT wait for the shared answer and refuse with 450 4.7.1 over it', async () => {
    const { shared } = sharedCounter();
    const clock = new FakeClock();
    const rates = new ClientRates(clock, {
      message: { count: 1, periodMs: 10_000 },
      recipient: { count: 1, periodMs: 10_000 },
      shared,
    });
    const t = new Harness({ options: { clock, clientRates: rates } });
    await t.send('EHLO c\r\n');
    assert.deepEqual(
      codes(
        await t.send(
          'MAIL FROM:<a@b.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n',
        ),
      ),
      ['250 2.1.0', '250 2.1.5', '450 4.7.1', '250 2.0.0', '450 4.7.1'],
    );
  });
});

describe('session: client rates at MAIL and RCPT', () => {
  test('over the message rate MAIL gets 450 4.7.1; over the recipient rate RCPT gets 450 4.7.1; both recover', async () => {
    const clock = new FakeClock();
    const rates = new ClientRates(clock, {
      message: { count: 2, periodMs: 10_000 },
      recipient: { count: 3, periodMs: 10_000 },
    });
    const t = new Harness({ options: { clock, clientRates: rates } });
    await t.send('EHLO c\r\n');
    assert.deepEqual(codes(await t.send('MAIL FROM:<a@b.test>\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n')), [
      '250 2.1.0',
      '250 2.0.0',
      '250 2.1.0',
    ]);
    const over = await t.send(
      'RCPT TO:<x@y.test>\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\nRCPT TO:<w@y.test>\r\nRCPT TO:<v@y.test>\r\n',
    );
    assert.deepEqual(
      codes(over), // The repeated x@y.test is no new recipient and is not counted.
      ['250 2.1.5', '250 2.1.5', '250 2.1.5', '250 2.1.5', '450 4.7.1'],
    );
    assert.match(over, /450 4\.7\.1 Error: too many recipients from 192\.0\.2\.7\r\n/);
    assert.match(
      await t.send('RSET\r\nMAIL FROM:<a@b.test>\r\n'),
      /450 4\.7\.1 Error: too much mail from 192\.0\.2\.7\r\n$/,
    );
    clock.advance(10_000);
    assert.deepEqual(codes(await t.send('MAIL FROM:<a@b.test>\r\nRCPT TO:<q@y.test>\r\n')), [
      '250 2.1.0',
      '250 2.1.5',
    ]);
  });
});
