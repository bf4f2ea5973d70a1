// A postmaster reloads `logmta serve` (SIGHUP: a certificate renewal, an edit) while the other
// doors of the daemon are in use: an ODMR customer dialling in again and again to collect its
// mail with EHLO, AUTH CRAM-MD5 and ATRN on the [odmr] listen port, and scripts running
// `logmta queue list` and `logmta sendmail` on the control socket. What must hold: the customer
// is never refused nor reset — its connection waits through the restart and is greeted by the
// new daemon; at most a session caught before its ATRN gets the documented 421 4.3.2 — and
// every held message reaches it exactly once; every CLI run is answered (exit 0, never "no
// daemon"), and every message sendmail handed over is delivered once; a monitoring scraper
// polling the HTTP admin's /metrics is answered 200 every time, never refused. A port or socket path the
// new file no longer names is closed; a new one is bound.
// Fails: naming what a client saw (refused, reset, a reply it should not get) or the messages
// lost or delivered twice.

import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { LOGMTA_BIN, runTool, SmtpChat, testToml, waitFor } from '../support/daemon.js';
import { type AtrnSession, atrn, reservePort, scenes, type Stage } from './kit.js';
import { copiesById, logCounter } from './traffic-kit.js';

const scene = scenes();

const ACCOUNT = `
[[odmr.account]]
user = "acme"
password = "acme-secret"
domains = ["acme.example"]
`;

/** Sends SIGHUP and waits until the daemon says it has reloaded. */
async function reload(s: Stage, logged: (msg: string) => number): Promise<void> {
  const before = logged('reloaded');
  s.daemon.kill('SIGHUP');
  await waitFor(() => logged('reloaded') > before, `reload ${before + 1} done`, 30_000);
}

/** How a TCP connect to `port` goes: "open" (the greeting's first line), or the error code. */
async function knock(port: number): Promise<string> {
  try {
    const { chat, greeting } = await SmtpChat.open(port);
    chat.close();
    return greeting;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

/** One GET on a new connection (no keep-alive): the status, or the error's code. */
function scrape(port: number, path: string): Promise<string> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 20_000 }, (res) => {
      res.resume();
      res.once('end', () => resolve(String(res.statusCode)));
      res.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    req.once('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

describe('reload keeps the ODMR port and the control socket bound', () => {
  test('an ODMR customer dialling in a loop through 12 SIGHUPs: never refused or reset, each message once', async () => {
    const port = await reservePort();
    // auth_per_minute: the customer dials in as fast as it can, well over the default 30.
    const s = await scene.stage({
      toml: `[odmr]\nlisten = ["127.0.0.1:${port}"]\nauth_per_minute = 100000\n${ACCOUNT}`,
    });
    const logged = logCounter(s.daemon);
    const N = 60;
    const sent = Array.from({ length: N }, (_, i) => `u${i}@acme.example`);
    await s.send(sent);
    await s.waitHeld('acme.example', N);

    const got: string[] = [];
    const odd: string[] = [];
    const seen = { accepted: 0, cut: 0, noMail: 0, perSession: [] as number[] };
    /** The turnaround under way, if any. */
    let live: AtrnSession | undefined;
    let reloadsDone = false;
    /** Set when the test is over, whatever the customer has got by then. */
    let over = false;
    // fetchmail's ODMR mode, looping: dial in, ATRN, take what comes, dial in again at once.
    const customer = (async () => {
      while (!over && !(reloadsDone && got.length >= N) && odd.length < 20) {
        try {
          // A slow customer (30 ms per reply), so that reloads land in the middle of turnarounds.
          const a = await atrn(port, 'acme', 'acme-secret', [], { delayMs: 30 });
          if (a.reply.startsWith('250')) {
            seen.accepted++;
            live = a;
            await a.done;
            live = undefined;
            seen.perSession.push(a.received.length);
            got.push(...a.received.flatMap((t) => t.recipients));
          } else if (/^421 4\.3\.2 /.test(a.reply)) seen.cut++;
          else if (a.reply.startsWith('453')) seen.noMail++;
          else odd.push(`reply: ${a.reply}`);
        } catch (e) {
          odd.push(`error: ${(e as Error).message}`);
        }
      }
    })();
    try {
      let hit: AtrnSession | undefined;
      for (let i = 1; i <= 12; i++) {
        // Each SIGHUP while a turnaround not hit before has delivered a message and goes on.
        await waitFor(
          () => (live !== undefined && live !== hit && live.received.length > 0) || odd.length > 0,
          `a turnaround under way before reload ${i}`,
          30_000,
        ).catch((e: Error) => {
          const out = join('/tmp', `reload-bound-${process.pid}.log`);
          writeFileSync(out, `${s.daemon.stdout()}\n--- stderr\n${s.daemon.stderr()}`);
          throw new Error(
            `${e.message} (${JSON.stringify(seen)}, collected ${got.length}; daemon log in ${out})`,
          );
        });
        if (odd.length > 0) break;
        hit = live;
        await reload(s, logged);
      }
    } catch (e) {
      over = true;
      throw e;
    } finally {
      reloadsDone = true;
    }
    await waitFor(() => got.length >= N || odd.length >= 20, `all ${N} messages collected`, 60_000)
      .catch(() => {})
      .finally(() => {
        over = true;
      });
    await customer;
    const summary = `sessions accepted ${seen.accepted} (messages each: ${seen.perSession.join(' ')}), cut before ATRN ${seen.cut}, no mail ${seen.noMail}; collected ${got.length} of ${N}`;
    console.log(summary);
    assert.deepEqual(odd, [], `the customer saw only 220, its replies and 421 4.3.2 (${summary})`);
    const twice = got.filter((r, i) => got.indexOf(r) !== i);
    assert.deepEqual(twice, [], `delivered twice (${summary})`);
    assert.deepEqual([...got].sort(), [...sent].sort(), `every message once (${summary})`);
    assert.ok(seen.accepted > 12, `the customer was served across the reloads (${summary})`);
    await s.waitHeld('acme.example', 0);
  });

  // Both ways of running the SMTP sessions: with a session thread, every daemon a reload starts
  // hands the SMTP ports over to the thread — and must leave the control socket alone.
  for (const thread of [false, true])
    test(`\`logmta queue list\` and \`logmta sendmail\` in loops through 15 SIGHUPs: always answered, mail once${thread ? ' (session thread)' : ''}`, async () => {
      const s = await scene.stage({
        toml: `[smtp]\nsession_thread = ${thread}\n[[local]]\ndomain = "local.test"\nusers = ["ann"]\n`,
      });
      const logged = logCounter(s.daemon);
      const cfg = s.daemon.configFile!;
      const failures: string[] = [];
      const ids: string[] = [];
      let runs = 0;
      let done = false;
      const cli = (args: string[], input = '') =>
        runTool(process.execPath, [LOGMTA_BIN, ...args], { input, timeoutMs: 60_000 });
      const lister = async (): Promise<void> => {
        while (!done && failures.length < 10) {
          const r = await cli(['queue', 'list', '--config', cfg]);
          runs++;
          if (r.code !== 0) failures.push(`queue list: exit ${r.code}: ${r.stderr.trim()}`);
        }
      };
      const sender = async (): Promise<void> => {
        for (let n = 0; !done && failures.length < 10; n++) {
          const id = `<cli-${n}@sender.test>`;
          const r = await cli(
            ['sendmail', '--config', cfg, '-f', 'script@sender.test', 'ann@local.test'],
            `Message-ID: ${id}\nSubject: run ${n}\n\nbody ${n}\n`,
          );
          runs++;
          if (r.code === 0) ids.push(id);
          else failures.push(`sendmail: exit ${r.code}: ${r.stderr.trim()}`);
        }
      };
      const loops = [lister(), lister(), sender()];
      try {
        for (let i = 1; i <= 15 && failures.length === 0; i++) {
          // A CLI run ends between any two reloads, so that they meet restarts in every phase.
          const before = runs;
          await waitFor(() => runs > before, `a CLI run before reload ${i}`, 60_000);
          await reload(s, logged);
        }
      } finally {
        done = true;
        await Promise.all(loops);
      }
      assert.deepEqual(failures, [], `every CLI run answered (${runs} runs)`);
      const mail = join(s.dataDir, 'mail');
      await waitFor(
        () => ids.every((id) => copiesById(mail, []).has(id)),
        `${ids.length} messages in the Maildir`,
      );
      const copies = copiesById(mail, []);
      assert.deepEqual(
        ids.filter((id) => copies.get(id) !== 1),
        [],
        'each message sendmail handed over delivered once',
      );
      assert.ok(ids.length > 0, 'sendmail ran during the reloads');
    });

  test('a scraper polling /metrics through 10 SIGHUPs: every request answered 200, never refused', async () => {
    const port = await reservePort();
    const s = await scene.stage({ toml: `[admin]\nlisten = "127.0.0.1:${port}"` });
    const logged = logCounter(s.daemon);
    const seen = new Map<string, number>();
    let stop = false;
    const poller = async (): Promise<void> => {
      while (!stop) {
        const r = await scrape(port, '/metrics');
        seen.set(r, (seen.get(r) ?? 0) + 1);
      }
    };
    const pollers = [poller(), poller(), poller()];
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 50));
      await reload(s, logged);
    }
    stop = true;
    await Promise.all(pollers);
    assert.deepEqual([...seen.keys()], ['200'], `what the scrapes got: ${JSON.stringify([...seen])}`);
    assert.ok((seen.get('200') ?? 0) >= 30, 'the scrapers ran through the reloads');
  });

  test('a reload that moves the HTTP admin port closes the old one and binds the new one', async () => {
    const [p1, p2] = [await reservePort(), await reservePort()];
    const s = await scene.stage({ toml: `[admin]\nlisten = "127.0.0.1:${p1}"` });
    const logged = logCounter(s.daemon);
    const cfg = s.daemon.configFile!;
    assert.equal(await scrape(p1, '/metrics'), '200');
    writeFileSync(cfg, testToml(`[admin]\nlisten = "127.0.0.1:${p2}"`, s.dataDir));
    await reload(s, logged);
    assert.equal(await scrape(p1, '/metrics'), 'ECONNREFUSED', 'the port the file no longer names is closed');
    assert.equal(await scrape(p2, '/metrics'), '200', 'the new port is bound');
    writeFileSync(cfg, testToml('', s.dataDir));
    await reload(s, logged);
    assert.equal(await scrape(p2, '/metrics'), 'ECONNREFUSED', 'no HTTP admin once the file names none');
  });

  test('a reload that moves the ODMR port and the control socket closes the old ones and binds the new ones', async () => {
    const [p1, p2] = [await reservePort(), await reservePort()];
    const s = await scene.stage({ toml: `[odmr]\nlisten = ["127.0.0.1:${p1}"]\n${ACCOUNT}` });
    const logged = logCounter(s.daemon);
    const cfg = s.daemon.configFile!;
    const oldSocket = join(s.dataDir, 'admin.sock');
    const newSocket = join(s.dir, 'control.sock');
    const write = (odmr: string, admin: string): void =>
      writeFileSync(cfg, testToml(`${admin}\n[odmr]\nlisten = ${odmr}\n${ACCOUNT}`, s.dataDir));
    const queueList = () => runTool(process.execPath, [LOGMTA_BIN, 'queue', 'list', '--config', cfg]);
    assert.match(await knock(p1), /^220 .*ODMR/);

    write(`["127.0.0.1:${p2}"]`, `[admin]\nsocket = "${newSocket}"`);
    await reload(s, logged);
    assert.equal(await knock(p1), 'ECONNREFUSED', 'the port the file no longer names is closed');
    assert.match(await knock(p2), /^220 .*ODMR/, 'the new port is bound');
    assert.equal(existsSync(oldSocket), false, 'the old control socket is gone');
    const r = await queueList();
    assert.equal(r.code, 0, `queue list on the new control socket: ${r.stderr}`);
    await assert.rejects(
      new Promise((resolve, reject) => net.connect(oldSocket).once('connect', resolve).once('error', reject)),
      /ENOENT/,
    );

    write('[]', '');
    await reload(s, logged);
    assert.equal(await knock(p2), 'ECONNREFUSED', 'no ODMR port once the file names none');
    assert.equal(existsSync(newSocket), false, 'the moved control socket is gone again');
    const back = await queueList();
    assert.equal(back.code, 0, `queue list on the default control socket: ${back.stderr}`);
  });
});
