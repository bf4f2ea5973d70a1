// Load on the receiving side: 1,000 concurrent inbound connections held open (greeted, idle)
// while mail flows on ten others, with RSS, heap and event-loop delay reported
// (perf_hooks.monitorEventLoopDelay); and a client that floods pipelined commands without ever
// reading its replies cannot make the server buffer without bound (the session stops reading
// while its socket's write side is congested).
// Fails: on a refused connection, a message that is not accepted, an event-loop delay or buffer
// above the bound.

import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { RawClient, sleep, startTestMta, type TestMta } from '../fuzz/harness.js';

const HELD = Number(process.env.LOAD_CONNECTIONS ?? 1000);
let mta: TestMta;

before(async () => {
  mta = await startTestMta({
    toml: `max_connections = ${HELD + 100}\nmax_connections_per_ip = ${HELD + 100}`,
    level: 'info',
  });
});
after(async () => {
  await mta.stop();
});

const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;

async function sendMessages(port: number, n: number, tag: string): Promise<number> {
  const c = await RawClient.connect(port);
  let ok = 0;
  try {
    await c.waitFor(/^220 .*\r\n/);
    await c.command('EHLO load.example');
    for (let i = 0; i < n; i++) {
      await c.command('MAIL FROM:<load@load.example>');
      await c.command('RCPT TO:<bob@localhost>');
      await c.command('DATA');
      const r = await c.command(`Subject: ${tag} ${i}\r\n\r\nhello\r\n.`, 10_000);
      if (r.startsWith('250 ')) ok++;
    }
    await c.command('QUIT');
  } finally {
    c.destroy();
  }
  return ok;
}

describe('receiving under load', () => {
  test(`${HELD} idle connections held open while mail flows on others`, async (t) => {
    const rss0 = process.memoryUsage().rss;
    const held: RawClient[] = [];
    try {
      for (let i = 0; i < HELD; i += 100) {
        held.push(
          ...(await Promise.all(
            Array.from({ length: Math.min(100, HELD - i) }, () => RawClient.connect(mta.port)),
          )),
        );
      }
      const greeted = await Promise.all(held.map((c) => c.waitFor(/^220 .*\r\n/, 10_000)));
      assert.equal(greeted.filter(Boolean).length, HELD, 'not every held connection was greeted');
      assert.equal(mta.daemon.listeners[0]!.connections.size, HELD);

      const h = monitorEventLoopDelay({ resolution: 10 });
      h.enable();
      const t0 = Date.now();
      const counts = await Promise.all(
        Array.from({ length: 10 }, (_, k) => sendMessages(mta.port, 20, `flow${k}`)),
      );
      const ms = Date.now() - t0;
      h.disable();
      const accepted = counts.reduce((a, b) => a + b, 0);
      assert.equal(accepted, 200);

      // The held connections are all still alive and answer.
      const sample = held.filter((_, i) => i % 50 === 0);
      for (const c of sample) assert.match(await c.command('NOOP'), /^250 /);
      assert.equal(held.filter((c) => c.closed).length, 0);

      const mem = process.memoryUsage();
      const p99 = h.percentile(99) / 1e6;
      const max = h.max / 1e6;
      t.diagnostic(
        `held=${HELD} messages=200 in ${ms} ms (${((200 * 1000) / ms).toFixed(0)}/s) rss=${mib(mem.rss)} (+${mib(mem.rss - rss0)}) heap=${mib(mem.heapUsed)} loop-delay p50=${(h.percentile(50) / 1e6).toFixed(1)}ms p99=${p99.toFixed(1)}ms max=${max.toFixed(1)}ms`,
      );
      // Loose bounds (CI has 2 shared cores): the loop is never blocked for long.
      assert.ok(p99 < 250, `event-loop delay p99 ${p99} ms`);
      assert.ok(mem.rss - rss0 < 300 * 1048576, `RSS grew by ${mib(mem.rss - rss0)}`);
    } finally {
      for (const c of held) c.destroy();
    }
    for (let i = 0; i < 200 && mta.daemon.listeners[0]!.connections.size > 0; i++) await sleep(10);
    assert.equal(mta.daemon.listeners[0]!.connections.size, 0);
  });

  test('a client that pipelines without reading cannot grow server buffers without bound', async (t) => {
    const c = await RawClient.connect(mta.port);
    await c.waitFor(/^220 .*\r\n/);
    // Stop reading replies: the kernel buffers fill and the server's writes back up.
    c.socket.pause();
    const chunk = Buffer.from('EHLO flood.example\r\n'.repeat(5000)); // ~100 KB in, ~1.3 MB of replies
    let sent = 0;
    const end = Date.now() + 3000;
    while (Date.now() < end && sent < 20 * 1048576) {
      if (!c.socket.write(chunk)) {
        // The server stopped reading too: wait (bounded) for a drain that may never come.
        let onDrain: () => void = () => {};
        await Promise.race([new Promise<void>((r) => c.socket.once('drain', (onDrain = r))), sleep(200)]);
        c.socket.off('drain', onDrain);
      }
      sent += chunk.length;
      await sleep(1);
    }
    await sleep(300);
    const conn = [...mta.daemon.listeners[0]!.connections][0];
    assert.ok(conn, 'connection gone');
    const outBuffered = conn.socket.writableLength;
    const inBuffered = conn.session.input.buffered;
    t.diagnostic(
      `client offered ${mib(sent)} (${mib(c.socket.writableLength)} still in its own buffer); server holds ${mib(outBuffered)} of replies and ${mib(inBuffered)} of input; reading=${conn.session.isReading}`,
    );
    assert.equal(conn.session.isReading, false, 'the server kept reading from a client that does not read');
    assert.ok(outBuffered < 4 * 1048576, `server reply buffer ${mib(outBuffered)}`);
    assert.ok(inBuffered < 1048576, `server input buffer ${mib(inBuffered)}`);
    // Once the client reads again, the session resumes and answers.
    c.socket.resume();
    c.destroy();
  });
});
