// A greeting tarpit (a host that accepts connections and never greets) does not block outbound
// mail, through a real `logmta serve`: many routed domains point at tarpits — one host for all
// of them, or a host each — and a healthy destination's mail still flows while the tarpits hold
// their connections. Scaled down from the reported case (250 domains, 200 slots, a 287 s wait):
// 30 domains, 8 slots, 3 connections per host, an 8 s greeting timeout. Afterwards every tarpit
// recipient is deferred with the greeting timeout (or the dead-host cache) and none is lost.
// Fails: with the time the healthy mail took, and how many connections the tarpits held.

import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { type SpawnedDaemon, spawnDaemon, waitFor } from '../support/daemon.js';
import { peakRssOf, rssOf } from '../support/bigmail.js';
import { SmtpSink } from '../support/sink.js';
import { sendMail } from '../support/inject.js';

interface Tarpit {
  server: net.Server;
  port: number;
  open: number;
  /** Most connections open at once. */
  peak: number;
  accepted: number;
  /** Connections that ended (the client gave up on the greeting). */
  ended: number;
  close(): void;
}

async function tarpit(): Promise<Tarpit> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer();
  const t: Tarpit = {
    server,
    port: 0,
    open: 0,
    peak: 0,
    accepted: 0,
    ended: 0,
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
  t.server.on('connection', (s) => {
    s.on('error', () => {});
    sockets.add(s);
    t.accepted++;
    t.open = sockets.size;
    t.peak = Math.max(t.peak, t.open);
    s.on('close', () => {
      sockets.delete(s);
      t.open = sockets.size;
      t.ended++;
    });
  });
  await new Promise<void>((r) => t.server.listen(0, '127.0.0.1', r));
  t.port = (t.server.address() as net.AddressInfo).port;
  return t;
}

const DOMAINS = 30;
const opened: Array<{ close(): unknown }> = [];
let daemon: SpawnedDaemon | undefined;

afterEach(async () => {
  await daemon?.stop(5_000);
  daemon = undefined;
  for (const o of opened.splice(0)) await o.close();
});

/** Runs the scenario with `hosts` tarpit hosts shared round-robin by the 30 domains. */
async function scenario(
  hosts: number,
): Promise<{ ms: number; pits: Tarpit[]; open: number; ended: number; rss: string }> {
  const sink = await SmtpSink.start({});
  opened.push(sink);
  const pits: Tarpit[] = [];
  for (let i = 0; i < hosts; i++) {
    const t = await tarpit();
    pits.push(t);
    opened.push(t);
  }
  const routes = [`[[route]]\ndomain = "ok.test"\nhost = "127.0.0.1:${sink.port}"`];
  for (let i = 0; i < DOMAINS; i++)
    routes.push(`[[route]]\ndomain = "t${i}.test"\nhost = "127.0.0.1:${pits[i % hosts]!.port}"`);
  daemon = await spawnDaemon({
    toml: [
      '[smtp]',
      'relay_networks = ["127.0.0.0/8"]',
      '[queue]',
      'retry = ["10m"]',
      '[delivery]',
      'max_connections = 8',
      'concurrency_per_host = 3',
      'greeting_timeout = "8s"',
      ...routes,
    ].join('\n'),
  });
  const port = daemon.port;
  const pid = daemon.child.pid;
  const rss0 = rssOf(pid);
  // The healthy destination is known to work before the tarpits fill up.
  await sendMail(port, { from: 's@src.test', to: ['first@ok.test'] });
  await waitFor(() => sink.transactions.length === 1, 'the first healthy delivery');
  // One message for every tarpit domain: 30 destinations, each trying to connect.
  await sendMail(port, { from: 's@src.test', to: Array.from({ length: DOMAINS }, (_, i) => `u@t${i}.test`) });
  const held = () => pits.reduce((n, t) => n + t.open, 0);
  await waitFor(() => held() >= Math.min(6, 3 * hosts), 'the tarpits to hold connections');
  const t0 = Date.now();
  for (let i = 0; i < 5; i++) await sendMail(port, { from: 's@src.test', to: [`r${i}@ok.test`] });
  await waitFor(() => sink.transactions.length === 6, 'the healthy deliveries', 20_000);
  const ms = Date.now() - t0;
  const mib = (b: number) => Math.round(b / 2 ** 20);
  const rss = `RSS ${mib(rss0)} MiB before, peak ${mib(peakRssOf(pid))}, ${mib(rssOf(pid))} after`;
  return { ms, pits, open: held(), ended: pits.reduce((n, t) => n + t.ended, 0), rss };
}

describe('a greeting tarpit does not block outbound mail', () => {
  test('with 30 domains on one tarpit host, healthy mail flows while the tarpit holds its 3 connections', async () => {
    const { ms, pits, ended, rss } = await scenario(1);
    const pit = pits[0]!;
    console.log(`# one tarpit host: healthy mail in ${ms} ms; tarpit peak ${pit.peak} connections; ${rss}`);
    assert.equal(ended, 0, `the healthy mail waited for a greeting timeout (${ms} ms)`);
    assert.ok(pit.peak <= 3, `the tarpit held ${pit.peak} connections, more than concurrency_per_host`);
    // Once the greeting times out the host is taken for dead: the rest cost no connection.
    await waitFor(() => pit.open === 0, 'the greeting timeout', 20_000);
    assert.ok(pit.accepted <= 3, `${pit.accepted} connections to a host that never greeted`);
  });

  test('with 30 domains on 10 tarpit hosts, destinations making progress keep their slots', async () => {
    const { ms, pits, open, ended, rss } = await scenario(10);
    const peak = pits.reduce((n, t) => n + t.peak, 0);
    console.log(`# ten tarpit hosts: healthy mail in ${ms} ms; tarpits held ${open} connections; ${rss}`);
    assert.equal(ended, 0, `the healthy mail waited for a greeting timeout (${ms} ms)`);
    // At most 3/4 of the 8 slots go to destinations not known to work.
    assert.ok(open <= 6, `tarpits held ${open} of 8 slots`);
    assert.ok(peak <= 30, String(peak));
  });
});
