// ODMR (ATRN, RFC 2645) as customers meet it (issue 10): a customer whose line drops after some
// messages reconnects and ATRN brings the rest; recipients the customer answers 4xx for stay held
// and are offered by the next ATRN; a kill of the provider mid-session loses nothing; and two
// customers' accounts never see each other's mail.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LOGMTA_BIN, runTool, waitFor } from '../support/daemon.js';
import { atrn, scenes, type Stage } from './kit.js';

const scene = scenes();

const TOML = `
[[odmr.account]]
user = "acme"
password = "acme-secret"
domains = ["acme.example", "acme-corp.example"]

[[odmr.account]]
user = "beta"
password = "beta-secret"
domains = ["beta.example"]
`;

async function setup(): Promise<Stage> {
  return scene.stage({ toml: TOML });
}

const mail = (n: number, domain: string, prefix = 'u') =>
  Array.from({ length: n }, (_, i) => `${prefix}${i}@${domain}`);
const got = (sessions: Array<{ received: Array<{ recipients: string[] }> }>) =>
  sessions.flatMap((x) => x.received.flatMap((t) => t.recipients));

describe('ODMR scenarios', () => {
  test('a customer whose ATRN session drops after some messages reconnects, and ATRN brings the rest', async () => {
    const s = await setup();
    const m = mail(6, 'acme.example');
    await s.send(m);
    await s.waitHeld('acme.example', 6);
    const first = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme.example'], { dropAfter: 2 });
    assert.equal(first.reply, '250 2.0.0 OK now reversing the connection');
    await first.done;
    assert.equal(first.received.length, 2);
    await s.waitHeld('acme.example', 4);
    const second = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme.example']);
    assert.equal(second.reply, '250 2.0.0 OK now reversing the connection');
    await second.done;
    assert.deepEqual(got([first, second]).sort(), [...m].sort(), 'each message once');
    await s.waitHeld('acme.example', 0);
  });

  test('a customer whose line goes silent mid-session reconnects at once: the new ATRN takes over', async () => {
    const s = await setup();
    const m = mail(5, 'acme.example');
    await s.send(m);
    await s.waitHeld('acme.example', 5);
    const first = await atrn(s.odmrPort, 'acme', 'acme-secret', [], { stallAfter: 2 });
    await waitFor(() => first.received.length === 2, 'two messages before the line dies');
    // The provider is now waiting for a reply that never comes (minutes, by RFC 5321's timeouts).
    // The customer dials in again at once: no 451 — its earlier session is cut instead.
    const second = await atrn(s.odmrPort, 'acme', 'acme-secret', []);
    assert.equal(second.reply, '250 2.0.0 OK now reversing the connection');
    await second.done;
    await first.done;
    assert.deepEqual(got([first, second]).sort(), [...m].sort(), 'each message once');
    await s.waitHeld('acme.example', 0);
  });

  test("another account naming a customer's lane is refused and cuts nothing", async () => {
    const s = await setup();
    await s.send(mail(3, 'acme.example'));
    await s.waitHeld('acme.example', 3);
    const first = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme.example'], { stallAfter: 1 });
    await waitFor(() => first.received.length === 1, 'one message');
    const other = await atrn(s.odmrPort, 'beta', 'beta-secret', ['acme.example']);
    assert.equal(other.reply, '450 4.7.1 ATRN request refused');
    assert.equal(first.ended, false, 'the session is still there');
  });

  test('recipients the customer answers 4xx for stay held and are offered on the next ATRN', async () => {
    const s = await setup();
    await s.send(['ok1@acme.example', 'busy1@acme.example', 'ok2@acme.example', 'busy2@acme.example']);
    await s.waitHeld('acme.example', 4);
    const first = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme.example'], {
      rcptReply: (a) => (a.startsWith('busy') ? '450 4.2.1 mailbox busy, try later' : undefined),
    });
    await first.done;
    assert.deepEqual(got([first]).sort(), ['ok1@acme.example', 'ok2@acme.example']);
    await s.waitHeld('acme.example', 2);
    const second = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme.example']);
    await second.done;
    assert.deepEqual(got([second]).sort(), ['busy1@acme.example', 'busy2@acme.example']);
    await s.waitHeld('acme.example', 0);
  });

  test('SIGKILL of the provider during an ATRN session: after the restart ATRN brings the rest', async () => {
    const s = await setup();
    const m = mail(40, 'acme-corp.example');
    await s.send(m);
    await s.waitHeld('acme-corp.example', 40);
    const first = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme-corp.example'], { delayMs: 5 });
    while (first.received.length < 5) await new Promise((r) => setTimeout(r, 10));
    await s.restart('SIGKILL');
    await first.done;
    const second = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme-corp.example']);
    assert.equal(second.reply, '250 2.0.0 OK now reversing the connection');
    await second.done;
    const all = got([first, second]);
    assert.deepEqual([...new Set(all)].sort(), [...m].sort(), 'every message arrived');
    assert.ok(all.length - new Set(all).size <= 1, 'at most the message in flight twice');
  });

  test("two customers' accounts never see each other's mail", async () => {
    const s = await setup();
    await s.send([
      ...mail(3, 'acme.example', 'a'),
      ...mail(2, 'acme-corp.example', 'c'),
      ...mail(2, 'beta.example', 'b'),
    ]);
    await s.waitLanes(
      (l) =>
        l['held-acme.example'] === 3 && l['held-acme-corp.example'] === 2 && l['held-beta.example'] === 2,
      'all held',
    );
    // Naming the other account's domain is refused as a whole.
    const steal = await atrn(s.odmrPort, 'beta', 'beta-secret', ['acme.example']);
    assert.equal(steal.reply, '450 4.7.1 ATRN request refused');
    const mixed = await atrn(s.odmrPort, 'acme', 'acme-secret', ['acme.example', 'beta.example']);
    assert.equal(mixed.reply, '450 4.7.1 ATRN request refused');
    const beta = await atrn(s.odmrPort, 'beta', 'beta-secret', []);
    await beta.done;
    assert.deepEqual(got([beta]).sort(), mail(2, 'beta.example', 'b'));
    const acme = await atrn(s.odmrPort, 'acme', 'acme-secret', []);
    await acme.done;
    assert.deepEqual(
      got([acme]).sort(),
      [...mail(3, 'acme.example', 'a'), ...mail(2, 'acme-corp.example', 'c')].sort(),
    );
    await s.waitLanes(
      (l) => Object.entries(l).every(([k, v]) => !k.startsWith('held-') || v === 0),
      'all empty',
    );
  });

  test("the postmaster's queue flush --domain of an ODMR domain says the mail waits for ATRN, and ATRN still brings it", async () => {
    const s = await setup();
    await s.send(mail(3, 'beta.example'));
    await s.waitHeld('beta.example', 3);
    const r = await runTool(process.execPath, [
      LOGMTA_BIN,
      'queue',
      'flush',
      '--domain',
      'beta.example',
      '--config',
      s.daemon.configFile!,
    ]);
    assert.equal(r.code, 0, r.stderr);
    // Nothing can deliver ODMR mail but the customer's ATRN: no "being delivered", no attempt.
    assert.match(r.stdout, /beta\.example: 3 held envelope\(s\) wait for the customer's ATRN/);
    assert.doesNotMatch(r.stdout, /being delivered/);
    const view = await runTool(process.execPath, [
      LOGMTA_BIN,
      'queue',
      'list',
      '--json',
      '--domain',
      'beta.example',
      '--config',
      s.daemon.configFile!,
    ]);
    const ms = JSON.parse(view.stdout) as Array<{ pieces: Array<{ attempts: number }> }>;
    assert.deepEqual(
      ms.flatMap((m) => m.pieces.map((p) => p.attempts)),
      [0, 0, 0],
    );
    const beta = await atrn(s.odmrPort, 'beta', 'beta-secret', []);
    await beta.done;
    assert.deepEqual(got([beta]).sort(), mail(3, 'beta.example'));
  });
});
