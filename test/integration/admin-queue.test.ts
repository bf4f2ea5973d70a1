// The operator's queue commands against a running daemon: a known queue (three messages routed
// to a closed port, so they defer), inspected with `logmta queue list/show/summary` run as the
// real CLI, then changed with hold/release/flush/delete/bounce by id and by filter (with the
// confirmation prompt), and the same operations over the HTTP admin with its bearer token.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { MessageView } from '../../src/queue/index.js';
import {
  closedPort,
  LOGMTA_BIN,
  makeTempDir,
  runTool,
  startTestDaemon,
  type TestDaemon,
  testToml,
  waitForMaildir,
} from '../support/daemon.js';

/** Polls an async condition every 20 ms; fails after 10 s. */
async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('logmta queue against a running daemon', () => {
  let d: TestDaemon;
  let cfg: string;
  const ids: Record<'m1' | 'm2' | 'm3', string> = { m1: '', m2: '', m3: '' };

  const cli = (args: string[], input?: string) =>
    runTool(
      process.execPath,
      [LOGMTA_BIN, 'queue', ...args, '--config', cfg],
      input === undefined ? {} : { input },
    );

  const list = async (args: Record<string, unknown> = {}) =>
    ((await d.daemon.admin.run('list', args)) as { messages: MessageView[] }).messages;

  before(async () => {
    const dir = makeTempDir('logmta-admin-');
    const toml = `
[[route]]
domain = "*"
host = "127.0.0.1:${await closedPort()}"
[admin]
listen = "127.0.0.1:0"
token = "s3cret"
`;
    cfg = join(dir, 'logmta.toml');
    writeFileSync(cfg, testToml(toml, join(dir, 'data')));
    d = await startTestDaemon({ toml, dir, keepDir: false });
    const inject = async (sender: string, recipients: string[], subject: string) => {
      const data = Buffer.from(`From: ${sender}\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n`);
      const r = (await d.daemon.admin.run('inject', {
        sender,
        recipients,
        data: data.toString('base64'),
      })) as { id: string };
      return r.id;
    };
    ids.m1 = await inject('alice@localhost', ['bob@example.net', 'carol@example.org'], 'one');
    ids.m2 = await inject('bob@example.com', ['dave@example.net'], 'two');
    ids.m3 = await inject('alice@localhost', ['erin@example.org'], 'three');
    // The first attempt happens at once and fails (closed port): wait until all are deferred.
    await until(async () => (await list({ lane: 'retry' })).length === 3, 'three deferred messages');
  });

  after(async () => {
    await d?.stop();
  });

  test('list shows every message like mailq: id, size, arrival, sender, pending recipients, last error', async () => {
    const r = await cli(['list']);
    assert.equal(r.code, 0, r.stderr);
    for (const id of Object.values(ids)) assert.match(r.stdout, new RegExp(`^${id} `, 'm'));
    assert.match(r.stdout, /^\s+bob@example\.net$/m);
    assert.match(r.stdout, /^\s+carol@example\.org$/m);
    assert.match(
      r.stdout,
      new RegExp(`^${ids.m2}\\s+\\d+ \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d  bob@example\\.com$`, 'm'),
    );
    assert.match(r.stdout, /\(lane retry-300s, 1 attempt, next in \d+m: 451 .*ECONNREFUSED/);
    assert.match(r.stdout, /-- \d+ Kbytes in 3 Requests\.\n$/);
  });

  test('list filters by domain, sender, lane and age, and prints JSON', async () => {
    const json = async (args: string[]) => {
      const r = await cli(['list', '--json', ...args]);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as MessageView[]).map((m) => m.id);
    };
    assert.deepEqual(await json(['--domain', 'example.org']), [ids.m1, ids.m3]);
    assert.deepEqual(await json(['--sender', 'bob@example.com']), [ids.m2]);
    assert.deepEqual(await json(['--sender', '@localhost']), [ids.m1, ids.m3]);
    assert.deepEqual(await json(['--lane', 'hold']), []);
    assert.deepEqual(await json(['--lane', 'retry-300s']), [ids.m1, ids.m2, ids.m3]);
    assert.deepEqual(await json(['--older-than', '1h']), []);
    assert.deepEqual(await json(['--older-than', '0s']), [ids.m1, ids.m2, ids.m3]);
    const full = JSON.parse(
      (await cli(['list', '--json', '--sender', 'bob@example.com'])).stdout,
    ) as MessageView[];
    assert.equal(full[0]!.sender, 'bob@example.com');
    assert.equal(full[0]!.pieces[0]!.recipients[0]!.address, 'dave@example.net');
    assert.equal(full[0]!.pieces[0]!.recipients[0]!.state, 'pending');
    assert.match(full[0]!.pieces[0]!.lastError ?? '', /^451 /);
    const bad = await cli(['list', '--older-than', 'soon']);
    assert.equal(bad.code, 64);
  });

  test('show prints the envelope, per-recipient state, history and (--data) the message', async () => {
    const r = await cli(['show', ids.m1, '--data']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^id:\\s+${ids.m1}$`, 'm'));
    assert.match(r.stdout, /^sender:\s+<alice@localhost>$/m);
    assert.match(r.stdout, /piece 0 \(version 2\) in lane retry-300s: next attempt .*, 1 attempt/);
    assert.match(r.stdout, /^ {4}pending +<bob@example\.net> +last: 451 /m);
    assert.match(r.stdout, /^ {4}pending +<carol@example\.org>/m);
    assert.match(r.stdout, /^ {4}\S+ \S+ {2}received$/m);
    assert.match(r.stdout, /^ {4}\S+ \S+ {2}deferred to retry-300s: 451 /m);
    assert.match(
      r.stdout,
      /--- message data ---\nReceived: \(from [^)]*\) by mx\.test \(logmta\) with local id /,
    );
    assert.match(r.stdout, /Subject: one\r\n\r\nbody of one\r\n$/);
    const missing = await cli(['show', '0000000000001']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /0000000000001 is not in the queue/);
    assert.equal((await cli(['show'])).code, 64);
  });

  test('summary counts messages per destination domain by age bucket, like qshape', async () => {
    const r = await cli(['summary']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => l.trim().split(/\s+/));
    assert.deepEqual(rows[0], ['T', '0-5m', '5-10m', '10-20m', '20-40m', '40-80m', '80-160m', '160m+']);
    assert.deepEqual(rows[1], ['TOTAL', '3', '3', '0', '0', '0', '0', '0', '0']);
    assert.deepEqual(rows.slice(2).sort(), [
      ['example.net', '2', '2', '0', '0', '0', '0', '0', '0'],
      ['example.org', '2', '2', '0', '0', '0', '0', '0', '0'],
    ]);
  });

  test('hold moves a message to the hold lane and release takes it out, both in its history', async () => {
    let r = await cli(['hold', ids.m2]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${ids.m2}: held (1 envelope)\n`);
    r = await cli(['list', '--lane', 'hold']);
    assert.match(r.stdout, new RegExp(`^${ids.m2}! `, 'm'));
    assert.match(r.stdout, /\(lane hold, 1 attempt/);
    r = await cli(['release', ids.m2]);
    assert.equal(r.stdout, `${ids.m2}: released (1 envelope)\n`);
    assert.deepEqual((await list({ lane: 'hold' })).length, 0);
    r = await cli(['show', ids.m2]);
    assert.match(r.stdout, /held by operator\n.*released by operator\n/);
    // An id that is not queued is reported, and the exit code says so.
    const again = await cli(['hold', '0000000000001']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /0000000000001: not in the queue/);
  });

  test('flush by id attempts a deferred message again now', async () => {
    const r = await cli(['flush', ids.m3]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${ids.m3}: flushed (1 envelope)\n`);
    await until(async () => {
      const m = (await list()).find((x) => x.id === ids.m3);
      return m !== undefined && m.pieces[0]!.attempts === 2 && m.pieces[0]!.laneKind === 'retry';
    }, 'a second attempt');
    const all = await cli(['flush']);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /flushing the retry queue: \d+ envelope\(s\) attempted now/);
  });

  test('an action by filter shows the count and asks; "n" does nothing, "y" and --yes act', async () => {
    let r = await cli(['hold', '--domain', 'example.org'], 'n\n');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /hold 2 messages\? \[y\/N\] nothing done/);
    assert.equal((await list({ lane: 'hold' })).length, 0);
    r = await cli(['hold', '--domain', 'example.org'], 'y\n');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      (await list({ lane: 'hold' })).map((m) => m.id),
      [ids.m1, ids.m3],
    );
    r = await cli(['release', '--lane', 'hold', '--yes']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split('\n').filter((l) => l.endsWith('released (1 envelope)')).length, 2);
    assert.equal((await list({ lane: 'hold' })).length, 0);
    // No ids and no filter is refused rather than meaning "everything".
    assert.equal((await cli(['delete'])).code, 64);
    const none = await cli(['delete', '--sender', 'nobody@nowhere', '--yes']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no message matches/);
  });

  test('delete removes a message without a report; bounce returns it to its sender', async () => {
    let r = await cli(['delete', ids.m2]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${ids.m2}: deleted (1 envelope)\n`);
    assert.equal((await cli(['show', ids.m2])).code, 1);
    r = await cli(['bounce', ids.m1]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${ids.m1}: bounced (1 envelope)\n`);
    assert.equal((await cli(['show', ids.m1])).code, 1);
    // The failure report goes to alice@localhost's Maildir and names both recipients.
    const [report] = await waitForMaildir(join(d.dataDir, 'mail', 'alice'), 1);
    assert.match(report!, /Final-Recipient: rfc822; ?bob@example\.net/i);
    assert.match(report!, /Final-Recipient: rfc822; ?carol@example\.org/i);
    assert.match(report!, /returned to sender by the postmaster/);
    assert.deepEqual(
      (await list()).filter((m) => m.sender !== '').map((m) => m.id),
      [ids.m3],
    );
  });

  test('the HTTP admin serves the same operations behind its bearer token', async () => {
    const base = `http://${d.daemon.admin.httpAddress}`;
    const auth = { authorization: 'Bearer s3cret' };
    assert.equal((await fetch(`${base}/api/queue`)).status, 401);
    assert.equal(
      (await fetch(`${base}/api/queue`, { headers: { authorization: 'Bearer wrong' } })).status,
      401,
    );
    const listed = (await (
      await fetch(`${base}/api/queue?sender=alice@localhost`, { headers: auth })
    ).json()) as {
      messages: MessageView[];
    };
    assert.deepEqual(
      listed.messages.map((m) => m.id),
      [ids.m3],
    );
    const shown = (await (await fetch(`${base}/api/queue/${ids.m3}?data=1`, { headers: auth })).json()) as {
      data: string;
    };
    assert.match(Buffer.from(shown.data, 'base64').toString(), /Subject: three/);
    assert.equal((await fetch(`${base}/api/queue/0000000000001`, { headers: auth })).status, 404);
    // A POST must be JSON (no cross-site form posts) and must not come from another origin.
    const post = (path: string, headers: Record<string, string>) =>
      fetch(`${base}${path}`, { method: 'POST', headers: { ...auth, ...headers }, body: '{}' });
    assert.equal((await post(`/api/queue/${ids.m3}/hold`, { 'content-type': 'text/plain' })).status, 415);
    assert.equal(
      (
        await post(`/api/queue/${ids.m3}/hold`, {
          'content-type': 'application/json',
          origin: 'http://evil.example',
        })
      ).status,
      403,
    );
    const held = await post(`/api/queue/${ids.m3}/hold`, { 'content-type': 'application/json' });
    assert.equal(held.status, 200);
    assert.deepEqual(await held.json(), {
      done: [{ id: ids.m3, pieces: 1 }],
      missing: [],
      unchanged: [],
      busy: [],
    });
    const summary = (await (
      await fetch(`${base}/api/op/summary`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ lane: 'hold' }),
      })
    ).json()) as { total: { total: number } };
    assert.equal(summary.total.total, 1);
    assert.equal((await post('/api/op/nonsense', { 'content-type': 'application/json' })).status, 400);
    // Routes other parts register are served too; a public one needs no token.
    d.daemon.admin.registerRoute('GET', '/hello', () => ({ body: 'hi' }), { public: true });
    const hello = await fetch(`${base}/hello`);
    assert.equal(hello.status, 200);
    assert.equal(await hello.text(), 'hi');
  });
});
