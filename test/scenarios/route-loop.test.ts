// A [[route]] or an [[etrn]] host that points back at this very logmta, as a postmaster's typo
// or a NATed name makes it: a real `logmta serve` with a fixed port, its route's host a DNS name
// (unbound) that resolves to its own listener, or a forwarder on another port that reaches it
// (NAT: only the 220 greeting naming our hostname tells). The mail must not go round until the
// Received: count stops it: it is deferred with "loops back to myself" and why, the log and
// `logmta queue list` show that text, and once the route is fixed and the daemon reloaded
// (SIGHUP) the mail reaches the real next hop exactly once.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { hasUnbound, startDnsServer, type TestDnsServer } from '../support/dns-server.js';
import { sendMail } from '../support/inject.js';
import { LOGMTA_BIN, runTool, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { reservePort, scenes, type Stage } from './kit.js';
import { nthOutcome, outcomes, received } from './mx-kit.js';

const scene = scenes();

/** `logmta queue ARGS` against the stage's daemon, as the postmaster types it. */
async function queue(s: Stage, args: string[]): Promise<string> {
  const r = await runTool(process.execPath, [LOGMTA_BIN, 'queue', ...args, '--config', s.daemon.configFile!]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** The daemon as the Internet sees it behind NAT: another address:port that forwards to its listener. */
async function natFront(
  to: number,
): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let n = 0;
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    n++;
    socks.add(sock);
    const up = net.connect(to, '127.0.0.1');
    socks.add(up);
    for (const s of [sock, up]) {
      s.on('error', () => {});
      s.on('close', () => {
        socks.delete(s);
        sock.destroy();
        up.destroy();
      });
    }
    sock.pipe(up).pipe(sock);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => n,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Rewrites the daemon's configuration, reloads it with SIGHUP and waits until it is applied. */
async function reload(s: Stage, from: string, to: string): Promise<void> {
  const cfg = s.daemon.configFile!;
  const text = readFileSync(cfg, 'utf8');
  assert.ok(text.includes(from), `${from} in the configuration`);
  const before = s.logLines().filter((l) => l.msg === 'reloaded').length;
  writeFileSync(cfg, text.replaceAll(from, to));
  s.daemon.kill('SIGHUP');
  await s.waitLog('reloaded', before + 1, 20_000);
}

/** Waits until each of `rcpts` is delivered, then checks `sink` got each exactly once and the queue is empty. */
async function deliveredOnce(s: Stage, sink: SmtpSink, rcpts: string[]): Promise<void> {
  for (const r of rcpts)
    await waitFor(() => outcomes(s, r).some((o) => o.msg === 'delivered'), `${r} delivered`);
  assert.equal((await queue(s, ['list'])).trim(), 'Mail queue is empty');
  assert.deepEqual(
    sink.transactions.map((t) => t.recipients),
    rcpts.map((r) => [r]),
    'exactly one delivery each',
  );
}

const unbound = hasUnbound() ? false : 'unbound not installed';

describe('a route that leads back to this logmta', () => {
  let dns: TestDnsServer | undefined;
  const closers: Array<() => Promise<void>> = [];
  before(async () => {
    if (!unbound)
      dns = await startDnsServer({ zones: ['loop.test'], records: ['me.loop.test. 300 IN A 127.0.0.1'] });
  });
  after(async () => {
    for (const c of closers.reverse()) await c();
    await dns?.stop();
  });

  async function stage(port: number, extra: string): Promise<Stage> {
    return scene.stage({
      toml: `hostname = "relay.test"
[smtp]
listen = ["127.0.0.1:${port}"]
relay_networks = ["127.0.0.0/8"]
${dns ? `[dns]\nservers = ["${dns.address}"]\ntimeout = "1s"\nattempts = 1\n` : ''}
[queue]
retry = ["1h"]
${extra}`,
    });
  }

  test('by its own address (a DNS name for our listener): deferred 4.4.6 with the reason, then, fixed with SIGHUP, delivered once', {
    skip: unbound,
  }, async () => {
    const port = await reservePort();
    const s = await stage(port, `[[route]]\ndomain = "c.test"\nhost = "me.loop.test:${port}"\n`);
    await sendMail(port, { from: 'a@src.test', to: ['u@c.test'] });
    const o = await nthOutcome(s, 'u@c.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    const why = `mail loops back to myself: me.loop.test[127.0.0.1]:${port} (one of our listeners) (the [[route]] of c.test) is this MTA; deferred until the configuration is fixed`;
    assert.equal(o.text, why, JSON.stringify(o));
    assert.equal(o.enhanced, '4.4.6', JSON.stringify(o));
    assert.equal(received(s), 1, 'the mail never came back to us');
    assert.ok((await queue(s, ['list'])).includes(why), 'the queue shows why');

    const sink = await SmtpSink.start();
    closers.push(() => sink.close());
    await reload(s, `me.loop.test:${port}`, `127.0.0.1:${sink.port}`);
    await queue(s, ['flush']);
    await deliveredOnce(s, sink, ['u@c.test']);
    assert.equal(received(s), 1);
  });

  test('behind NAT (only the greeting names us): deferred 4.4.6 with the reason; an ETRN host too; fixed with SIGHUP, delivered once', async () => {
    const port = await reservePort();
    const front = await natFront(port);
    closers.push(() => front.close());
    const s = await stage(
      port,
      `[[route]]\ndomain = "c.test"\nhost = "127.0.0.1:${front.port}"\n[[etrn]]\ndomain = "e.test"\nhost = "127.0.0.1:${front.port}"\n`,
    );
    await sendMail(port, { from: 'a@src.test', to: ['u@c.test'] });
    const o = await nthOutcome(s, 'u@c.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    const why = `mail loops back to myself: 127.0.0.1:${front.port} (greets as relay.test, our hostname) (the [[route]] of c.test) is this MTA; deferred until the configuration is fixed`;
    assert.equal(o.text, why);
    assert.equal(o.enhanced, '4.4.6');
    assert.equal(front.connections(), 1, 'one connection: closed after the greeting');
    assert.equal(received(s), 1, 'no transaction through ourselves');
    assert.ok((await queue(s, ['list'])).includes(why));

    // An ETRN domain whose host is us: the customer's ETRN flushes the lane into the same deferral.
    await sendMail(port, { from: 'a@src.test', to: ['x@e.test'] });
    await s.waitHeld('e.test', 1);
    assert.match(await s.etrn('e.test'), /^25[0-3]/);
    const e = await nthOutcome(s, 'x@e.test');
    assert.equal(e.msg, 'deferred', JSON.stringify(e));
    assert.match(
      String(e.text),
      /loops back to myself: .* \(greets as relay\.test, our hostname\) \(the \[\[etrn\]\] host of e\.test\)/,
    );
    assert.equal(received(s), 2);

    const sink = await SmtpSink.start();
    closers.push(() => sink.close());
    await reload(s, `127.0.0.1:${front.port}`, `127.0.0.1:${sink.port}`);
    await queue(s, ['flush']);
    await sink.waitForTransactions(1);
    assert.match(await s.etrn('e.test'), /^25[0-3]/);
    await deliveredOnce(s, sink, ['u@c.test', 'x@e.test']);
    assert.equal(received(s), 2);
  });

  test('a list of hosts: ourselves (by greeting) is skipped, the next host takes the mail at once', async () => {
    const port = await reservePort();
    const front = await natFront(port);
    closers.push(() => front.close());
    const sink = await SmtpSink.start();
    closers.push(() => sink.close());
    const s = await stage(
      port,
      `[[route]]\ndomain = "c.test"\nhost = ["127.0.0.1:${front.port}", "127.0.0.1:${sink.port}"]\n`,
    );
    await sendMail(port, { from: 'a@src.test', to: ['u@c.test'] });
    assert.equal((await nthOutcome(s, 'u@c.test')).msg, 'delivered');
    assert.deepEqual(
      sink.transactions.map((t) => t.recipients),
      [['u@c.test']],
    );
    assert.equal(received(s), 1);
  });
});
