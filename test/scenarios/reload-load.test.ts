// A postmaster reloads a busy `logmta serve` (systemctl reload, a certbot hook, an edit of the
// routes) 40 times while real clients keep sending: Python smtplib over STARTTLS with AUTH on the
// submission port and plain with relay_networks, swaks over STARTTLS, Postfix's smtp-source with
// parallel sessions. The configurations alternate the routes (sink A / sink B), the TLS
// certificate (EC / RSA), relay_networks, the local users and an alias, max_recipients,
// max_message_size and a listener added and removed; one reload brings an invalid file (refused).
// What must hold: every message a client got 250 for is delivered exactly once (Message-ID
// counted over the Maildirs and both sinks); no client saw anything but 2xx or the documented
// 421 4.3.2 of a session cut at the end of its transaction — no refused connect, no dropped
// line; after each reload new sessions meet the new configuration (the certificate openssl
// s_client is served, the SIZE in EHLO, the added port); the daemon's descriptors and memory
// after 40 reloads are those after 20 (the first 20 let the heaps reach their working size).
// Fails: naming the reload, the check and, for mail, the Message-IDs lost or duplicated.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import { makeTestCert } from '../support/certs.js';
import { needTools, runTool, SmtpChat, testToml, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { reservePort, scenes } from './kit.js';
import { audit, copiesById, logCounter, Traffic, type TrafficEvent } from './traffic-kit.js';

const scene = scenes();

/** Descriptors and resident memory of a process (Linux /proc). */
function procFacts(pid: number): { fds: number; rssKiB: number; targets: string[] } {
  const dir = `/proc/${pid}/fd`;
  const targets = readdirSync(dir).map((n) => {
    try {
      return readlinkSync(join(dir, n));
    } catch {
      return '?';
    }
  });
  const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return { fds: targets.length, rssKiB: Number(rss ?? 0), targets };
}

async function servedCert(port: number): Promise<string> {
  const r = await runTool(
    'openssl',
    ['s_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost'],
    { input: '', timeoutMs: 20_000 },
  );
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(r.stdout)?.[0];
  assert.ok(pem, `openssl s_client got no certificate:\n${r.stdout}\n${r.stderr}`);
  return new X509Certificate(pem).fingerprint256;
}

async function ehloSize(port: number): Promise<string> {
  const { chat } = await SmtpChat.open(port);
  try {
    chat.send('EHLO probe.test\r\n');
    const [ehlo = ''] = await chat.read(1);
    chat.send('QUIT\r\n');
    return /^250[- ]SIZE (\d+)/m.exec(ehlo)?.[1] ?? `(no SIZE in ${ehlo})`;
  } finally {
    chat.close();
  }
}

async function listening(port: number): Promise<boolean> {
  try {
    const { chat, greeting } = await SmtpChat.open(port);
    chat.close();
    return greeting.startsWith('220');
  } catch {
    return false;
  }
}

/** Reloads in all, and the one after which descriptors and memory are first counted. */
const [FIRST, LAST] = [20, 40];

const TOOLS = needTools('python3', 'swaks', '/usr/sbin/smtp-source', 'openssl');

describe('reload under load', { skip: TOOLS }, () => {
  test('40 SIGHUPs with changing configurations while four clients send: nothing lost, nothing twice, no refused connect', async () => {
    const [p1, p2, s1] = [await reservePort(), await reservePort(), await reservePort()];
    const sinkA = await SmtpSink.start();
    const sinkB = await SmtpSink.start();
    const [ec, rsa] = [await makeTestCert('ec'), await makeTestCert('rsa')];
    const fp = {
      ec: new X509Certificate(ec.cert).fingerprint256,
      rsa: new X509Certificate(rsa.cert).fingerprint256,
    };
    // Variant 0 and 1 alternate every setting named in the header.
    const config = (alt: boolean): string => `
[smtp]
listen = ["127.0.0.1:${p1}"${alt ? `, "127.0.0.1:${p2}"` : ''}]
submission = ["127.0.0.1:${s1}"]
relay_networks = ${alt ? '["127.0.0.0/8", "10.0.0.0/8"]' : '["127.0.0.0/8"]'}
max_recipients = ${alt ? 100 : 1000}
max_message_size = "${alt ? '1MiB' : '10MiB'}"
[tls]
cert = "${alt ? 'rsa' : 'ec'}-cert.pem"
key = "${alt ? 'rsa' : 'ec'}-key.pem"
[[user]]
name = "sub"
password = "secret"
[[local]]
domain = "local.test"
users = ${alt ? '["ann", "bob", "cid"]' : '["ann", "bob"]'}
aliases = { team = "${alt ? 'bob' : 'ann'}" }
[[route]]
domain = "r.test"
host = "127.0.0.1:${alt ? sinkB.port : sinkA.port}"
[queue]
retry = ["1s"]
`;
    const s = await scene.stage({
      toml: config(false),
      files: {
        'ec-cert.pem': ec.cert,
        'ec-key.pem': ec.key,
        'rsa-cert.pem': rsa.cert,
        'rsa-key.pem': rsa.key,
      },
    });
    const d = s.daemon;
    const cfg = d.configFile!;
    const write = (toml: string): void => writeFileSync(cfg, testToml(toml, s.dataDir));
    const traffic = new Traffic(s.dir);
    const logged = logCounter(d);
    // py-* messages have two recipients (one local, one routed); swaks and smtp-source one.
    const expected = (id: string): number => (id.startsWith('<py-') ? 2 : 1);
    const sinks = [sinkA, sinkB];
    const verdict = () => audit(traffic.events(), copiesById(join(s.dataDir, 'mail'), sinks), expected);
    try {
      traffic.python('py-sub', s1, {
        from: 'ann@local.test',
        to: ['bob@local.test', 'far@r.test'],
        starttls: true,
        user: 'sub',
        password: 'secret',
      });
      traffic.python('py-relay', p1, { from: 'app@app.test', to: ['team@local.test', 'out@r.test'] });
      traffic.swaks('swaks', p1, { from: 'sw@else.test', to: 'ann@local.test', tls: true });
      traffic.smtpSource('smtp-source', p1, {
        from: 'src@else.test',
        to: 'bob@local.test',
        sessions: 3,
        messages: 6,
      });
      await traffic.progress(new Map(), 2, 'traffic under the first configuration');

      const reloads = () => logged('reloaded');
      const refusedReloads = () => logged(/^reload refused/);
      const facts: Record<number, ReturnType<typeof procFacts>> = {};
      let alt = false;
      for (let i = 1; i <= LAST; i++) {
        const invalid = i === 15;
        const measure = i === FIRST || i === LAST;
        if (measure) {
          // Quiet first, so that the count is the daemon's own, without clients or deliveries.
          traffic.pause();
          await waitFor(() => traffic.idle(), `clients idle before reload ${i}`, 60_000);
          await waitFor(
            () => verdict().lost === 0,
            `everything acknowledged delivered before reload ${i}: ${verdict().problems.slice(0, 5).join('; ')}`,
            30_000,
          );
        }
        const since = traffic.snapshot();
        const [ok0, bad0] = [reloads(), refusedReloads()];
        if (invalid) writeFileSync(cfg, `${testToml(config(alt), s.dataDir)}\n[no_such_section]\nx = 1\n`);
        else {
          alt = !alt;
          write(config(alt));
        }
        d.kill('SIGHUP');
        if (invalid) await waitFor(() => refusedReloads() === bad0 + 1, `reload ${i} refused`, 30_000);
        else await waitFor(() => reloads() === ok0 + 1, `reload ${i} done`, 30_000);
        if (measure) {
          facts[i] = procFacts(d.child.pid!);
          traffic.resume();
        }
        // New sessions meet the configuration now in force.
        assert.equal(await servedCert(p1), alt ? fp.rsa : fp.ec, `reload ${i}: the certificate served`);
        assert.equal(await ehloSize(p1), alt ? '1048576' : '10485760', `reload ${i}: SIZE in EHLO`);
        assert.equal(await listening(p2), alt, `reload ${i}: the second port ${alt ? 'added' : 'removed'}`);
        await traffic.progress(since, measure ? 2 : 1, `after reload ${i}`, 60_000);
      }
      await traffic.stop();
      const events = traffic.events();
      await waitFor(() => verdict().lost === 0, 'every acknowledged message delivered', 60_000).catch(
        () => {},
      );
      const final = audit(events, copiesById(join(s.dataDir, 'mail'), sinks), expected, {
        messages: 6,
        sessions: 3,
      });
      const odd = events.filter(
        (e: TrafficEvent) =>
          !['acked', 'end', 'paused', 'resumed'].includes(e.ev) &&
          !(e.ev === 'refused' && e.code === 421 && /4\.3\.2/.test(e.text ?? '')) &&
          !(e.client === 'smtp-source' && /rejected: 421 4\.3\.2 /.test(e.err ?? '')),
      );
      const refusals = events.filter((e) => e.ev === 'refused').length;
      const runs = events.filter((e) => e.client === 'smtp-source');
      const summary =
        `acked ${final.acked}, unknown ${final.unknown}, lost ${final.lost}, duplicated ${final.duplicated}; ` +
        `421 4.3.2 seen ${refusals - odd.filter((e) => e.ev === 'refused').length}; smtp-source runs ${runs.length} ` +
        `(${runs.filter((e) => e.ev === 'acked').length} clean); sink A ${sinkA.transactions.length}, B ${sinkB.transactions.length}; ` +
        `fds after ${FIRST} reloads ${facts[FIRST]?.fds}, after ${LAST} ${facts[LAST]?.fds}; ` +
        `RSS ${facts[FIRST]?.rssKiB} → ${facts[LAST]?.rssKiB} KiB`;
      console.log(summary);
      assert.deepEqual(final.problems, [], summary);
      const kinds = new Map<string, number>();
      for (const e of odd) {
        const k = `${e.client} ${e.ev} ${e.stage ?? ''} ${e.code ?? ''} ${e.text ?? e.err ?? ''}`.slice(
          0,
          300,
        );
        kinds.set(k, (kinds.get(k) ?? 0) + 1);
      }
      assert.deepEqual(
        [...kinds].map(([k, n]) => `${n} × ${k}`),
        [],
        `clients saw only 2xx and 421 4.3.2 (${summary})`,
      );
      assert.ok(sinkA.transactions.length > 0 && sinkB.transactions.length > 0, 'both routes were used');
      // No leak per reload: the 20 reloads between the two counts left nothing behind. Memory is
      // counted from reload 20, not earlier: under this traffic the resident size climbs through
      // the first reloads (about 130 → 170 MiB by reload 20, up to 200 by 40) while V8 grows the
      // heaps of both isolates to their working size; a forced full GC after every reload shows
      // what is live staying flat all along (14 MiB in the main thread, 9 MiB in the session
      // thread, 40 reloads). A daemon kept alive per reload would cost megabytes each; the bound
      // is 64 MiB over the 20 reloads, twice the growth seen here.
      const [f1, f2] = [facts[FIRST]!, facts[LAST]!];
      assert.ok(
        Math.abs(f2.fds - f1.fds) <= 2,
        `descriptors ${f1.fds} after ${FIRST} reloads, ${f2.fds} after ${LAST}:\n${f2.targets.join('\n')}`,
      );
      assert.ok(
        f2.rssKiB - f1.rssKiB < 64 * 1024,
        `RSS ${f1.rssKiB} KiB after ${FIRST} reloads, ${f2.rssKiB} after ${LAST}`,
      );
    } catch (e) {
      // The daemon's side of a failure: its log, for the report.
      const out = join('/tmp', `reload-load-${process.pid}.log`);
      writeFileSync(out, `${d.stdout()}\n--- stderr\n${d.stderr()}`);
      throw new Error(`${(e as Error).message}\n(daemon log in ${out})`, { cause: e });
    } finally {
      await traffic.stop();
      await sinkA.close();
      await sinkB.close();
    }
  });
});
