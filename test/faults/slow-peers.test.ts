// Slow and failing peers never block unrelated destinations: a daemon routes four bad domains to
// peers that stall (accept, never greet), reset every connection, answer 4xx forever, or answer
// every command after a long delay, and a fifth domain to a healthy sink. With the bad
// destinations saturated (more messages than their connection limits) and retrying every
// 500 ms, mail to the healthy domain is still delivered promptly, and nothing to the bad ones is
// lost or wrongly reported delivered.
// Fails: with the time the healthy delivery took, or the message that went missing.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RawClient, sleep, startTestMta, type TestMta } from '../fuzz/harness.js';
import { SmtpChat, spawnDaemon } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { waitFor } from '../support/wait.js';

let mta: TestMta;
let healthy: SmtpSink;
let tempfail: SmtpSink;
let slow: SmtpSink;
let stall: net.Server;
let reset: net.Server;
const stallSockets = new Set<net.Socket>();
let resets = 0;

async function rawServer(onConn: (s: net.Socket) => void): Promise<net.Server> {
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    onConn(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return srv;
}
const portOf = (s: net.Server): number => (s.address() as net.AddressInfo).port;

before(async () => {
  healthy = await SmtpSink.start({ pipelining: true });
  tempfail = await SmtpSink.start({ rcptReply: () => '451 4.3.0 try again later' });
  slow = await SmtpSink.start({ delayMs: 3000 });
  stall = await rawServer((s) => {
    stallSockets.add(s);
    s.on('close', () => stallSockets.delete(s));
  });
  reset = await rawServer((s) => {
    resets++;
    s.resetAndDestroy();
  });
  const route = (d: string, port: number): string => `[[route]]\ndomain = "${d}"\nhost = "127.0.0.1:${port}"`;
  mta = await startTestMta({
    level: 'info',
    toml: [
      'relay_networks = ["127.0.0.0/8"]',
      '[queue]',
      'retry = ["500ms"]',
      '[delivery]',
      'concurrency_per_destination = 4',
      route('healthy.test', healthy.port),
      route('tempfail.test', tempfail.port),
      route('slow.test', slow.port),
      route('stall.test', portOf(stall)),
      route('reset.test', portOf(reset)),
    ].join('\n'),
  });
});

after(async () => {
  // Free the stalled deliveries first, so the daemon's stop does not wait for their timeouts.
  for (const s of stallSockets) s.destroy();
  stall.close();
  reset.close();
  await slow.close();
  await tempfail.close();
  const t0 = Date.now();
  await mta.stop();
  if (process.env.DEBUG_STOP) console.error('stop', Date.now() - t0);
  await healthy.close();
});

async function send(domain: string, n: number): Promise<string[]> {
  const c = await RawClient.connect(mta.port);
  const ids: string[] = [];
  try {
    await c.waitFor(/^220 .*\r\n/);
    await c.command('EHLO peers.example');
    for (let i = 0; i < n; i++) {
      await c.command('MAIL FROM:<a@peers.example>');
      assert.match(await c.command(`RCPT TO:<u${i}@${domain}>`), /^250 /);
      await c.command('DATA');
      const r = await c.command(`Subject: ${domain} ${i}\r\n\r\nhello\r\n.`, 10_000);
      assert.match(r, /^250 /);
      ids.push(/queued as (\S+)/.exec(r)?.[1] ?? '');
    }
    await c.command('QUIT');
  } finally {
    c.destroy();
  }
  return ids;
}

/** waitFor that returns how long the wait took (ms). */
async function until(cond: () => boolean, what: string, ms: number): Promise<number> {
  const t0 = Date.now();
  await waitFor(cond, what, ms);
  return Date.now() - t0;
}

describe('slow and failing peers', () => {
  test('stalling, resetting, 4xx-forever and slow destinations do not delay a healthy one', async (t) => {
    await Promise.all(['stall.test', 'reset.test', 'tempfail.test', 'slow.test'].map((d) => send(d, 15)));
    // Let the bad destinations fill their connection slots and start failing.
    await until(
      () => stallSockets.size >= 1 && resets > 0 && tempfail.connections > 0 && slow.connections > 0,
      'every bad destination tried',
      10_000,
    );
    assert.ok(stallSockets.size >= 1, 'no delivery reached the stalling peer');

    const t0 = Date.now();
    await send('healthy.test', 1);
    const first = await until(() => healthy.transactions.length >= 1, 'the first healthy delivery', 5000);
    assert.equal(healthy.transactions.length, 1, 'the healthy destination got nothing');
    await send('healthy.test', 20);
    const rest = await until(() => healthy.transactions.length >= 21, '21 healthy deliveries', 10_000);
    t.diagnostic(
      `healthy: first message delivered ${first} ms after acceptance; 20 more in ${rest} ms (total ${Date.now() - t0} ms); stalled connections ${stallSockets.size}, resets ${resets}, 4xx transactions ${tempfail.connections}, slow sink connections ${slow.connections}`,
    );
    assert.equal(healthy.transactions.length, 21);
    assert.ok(first < 2000, `first healthy delivery took ${first} ms`);
    // Per-destination limits hold: a stalled destination never takes more than its share.
    assert.ok(stallSockets.size <= 4, `stall.test holds ${stallSockets.size} connections (limit 4)`);
  });

  test('mail for failing destinations is retried, never reported delivered', async () => {
    // 15 messages to tempfail.test: every one refused at RCPT, so more than 15 RCPTs means retries.
    const rcpts = (): number => tempfail.commands.filter((c) => c.toUpperCase().startsWith('RCPT')).length;
    const waited = await until(() => rcpts() > 15, 'retried RCPTs', 10_000);
    assert.ok(rcpts() > 15, `tempfail.test saw ${rcpts()} RCPTs in ${waited} ms: not retried`);
    const delivered = mta.logs.filter((l) => l.includes('"msg":"delivered"'));
    for (const d of ['stall.test', 'reset.test', 'tempfail.test']) {
      assert.ok(!delivered.some((l) => l.includes(`@${d}`)), `${d} reported delivered`);
    }
    assert.equal(tempfail.transactions.length, 0);
  });
});

describe('shutdown with a stalled peer', () => {
  test('the daemon stops within its grace period while a delivery is stalled in the handshake', async () => {
    const socks = new Set<net.Socket>();
    const srv = await rawServer((s) => socks.add(s));
    const m = await startTestMta({
      level: 'info',
      toml: `relay_networks = ["127.0.0.0/8"]\n[[route]]\ndomain = "stall.test"\nhost = "127.0.0.1:${portOf(srv)}"`,
    });
    try {
      const c = await RawClient.connect(m.port);
      await c.waitFor(/^220 .*\r\n/);
      await c.command('EHLO peers.example');
      await c.command('MAIL FROM:<a@peers.example>');
      await c.command('RCPT TO:<u@stall.test>');
      await c.command('DATA');
      assert.match(await c.command('Subject: x\r\n\r\nx\r\n.'), /^250 /);
      c.destroy();
      await until(() => socks.size > 0, 'the stalled delivery', 3000);
      assert.equal(socks.size, 1, 'the delivery never reached the stalling peer');
      const t0 = Date.now();
      const stopped = m.daemon.stop(300).then(() => Date.now() - t0);
      const ms = await Promise.race([stopped, sleep(5000).then(() => -1)]);
      assert.ok(
        ms >= 0 && ms < 2000,
        `stop() took ${ms < 0 ? 'more than 5000' : ms} ms with a stalled delivery`,
      );
    } finally {
      for (const s of socks) s.destroy();
      srv.close();
      await m.stop();
    }
  });

  test('logmta serve exits 0 on SIGTERM within its 5 s grace while a delivery is stalled in the handshake', {
    timeout: 30_000,
  }, async () => {
    const socks = new Set<net.Socket>();
    const srv = await rawServer((s) => socks.add(s));
    try {
      const d = await spawnDaemon({
        toml: `[smtp]\nrelay_networks = ["127.0.0.0/8"]\n[[route]]\ndomain = "stall.test"\nhost = "127.0.0.1:${portOf(srv)}"`,
      });
      const { chat } = await SmtpChat.open(d.port);
      await chat.ask('EHLO peers.example\r\n');
      const r = await chat.ask('MAIL FROM:<a@peers.example>\r\nRCPT TO:<u@stall.test>\r\nDATA\r\n', 3);
      assert.deepEqual(
        r.map((x) => x.slice(0, 3)),
        ['250', '250', '354'],
      );
      assert.match((await chat.ask('Subject: x\r\n\r\nx\r\n.\r\n'))[0] ?? '', /^250 /);
      chat.close();
      // The peer accepted the connection and never greets (greeting_timeout is 30 s).
      await until(() => socks.size > 0, 'the stalled delivery', 5000);
      const t0 = Date.now();
      d.kill('SIGTERM');
      const exit = await Promise.race([d.exited, sleep(15_000).then(() => undefined)]);
      const ms = Date.now() - t0;
      if (exit === undefined) d.kill('SIGKILL');
      assert.deepEqual(exit, { code: 0, signal: null }, `still running ${ms} ms after SIGTERM`);
      assert.ok(ms < 7_000, `exited ${ms} ms after SIGTERM (grace 5 s)`);
    } finally {
      for (const s of socks) s.destroy();
      srv.close();
    }
  });
});
