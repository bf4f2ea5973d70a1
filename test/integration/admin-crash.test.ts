// Operator actions are records in the log: a daemon SIGKILLed right after `logmta queue hold`
// / `delete` / `release` answered comes back (recovery) with exactly that state and the
// action in the message's history. Messages are injected the way cron does it: a shell script
// piping into `logmta sendmail -t`. Also: sendmail's exit codes when a recipient is refused
// and when no daemon runs.
import assert from 'node:assert/strict';
import { existsSync, lstatSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { MessageView } from '../../src/queue/index.js';
import {
  closedPort,
  LOGMTA_BIN,
  makeTempDir,
  runTool,
  type SpawnedDaemon,
  spawnDaemon,
} from '../support/daemon.js';

describe('queue actions survive a crash right after they answered', () => {
  const dir = makeTempDir('logmta-admin-crash-');
  let daemon: SpawnedDaemon | undefined;
  let cfg = '';

  const queue = (args: string[], input?: string) =>
    runTool(
      process.execPath,
      [LOGMTA_BIN, 'queue', ...args, '--config', cfg],
      input === undefined ? {} : { input },
    );
  const listJson = async (args: string[] = []) => {
    const r = await queue(['list', '--json', ...args]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as MessageView[];
  };
  /** sendmail as a shell script calls it. */
  const sendmail = (script: string) =>
    runTool('bash', ['-c', script], { cwd: dir }).then((r) => ({ ...r, code: r.code }));

  after(async () => {
    await daemon?.stop(2_000);
    rmSync(dir, { recursive: true, force: true });
  });

  test('sendmail -t from a shell script queues the message with Bcc removed and headers added', async () => {
    daemon = await spawnDaemon({
      dir,
      toml: `
[[local]]
domain = "localhost"
users = ["alice"]
[[route]]
domain = "*"
host = "127.0.0.1:${await closedPort()}"
`,
    });
    cfg = daemon.configFile!;
    const bin = `${JSON.stringify(process.execPath)} ${JSON.stringify(LOGMTA_BIN)}`;
    for (const n of [1, 2, 3]) {
      const r = await sendmail(
        `printf 'To: Bob <bob@example.net>\\nCc: carol@example.org\\nBcc: secret@example.com\\nSubject: cron ${n}\\n\\nline one\\n.\\nnot this\\n' | ${bin} sendmail -t -f cron@localhost --config ${JSON.stringify(cfg)}`,
      );
      assert.equal(r.code, 0, r.stderr);
    }
    let ms: MessageView[] = [];
    for (let i = 0; i < 500; i++) {
      ms = await listJson(['--lane', 'retry']);
      if (ms.length === 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(ms.length, 3);
    assert.deepEqual(
      ms[0]!.pieces[0]!.recipients.map((r) => r.address),
      ['bob@example.net', 'carol@example.org', 'secret@example.com'],
    );
    assert.equal(ms[0]!.sender, 'cron@localhost');
    const shown = await queue(['show', ms[0]!.id, '--data']);
    const data = shown.stdout.slice(shown.stdout.indexOf('--- message data ---'));
    assert.doesNotMatch(data, /Bcc|secret@/);
    assert.match(data, /^From: cron@localhost\r$/m);
    assert.match(data, /^Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r$/m);
    assert.match(data, /^Message-ID: <[^@>]+@mx\.test>\r$/m);
    assert.match(data, /^To: Bob <bob@example\.net>\r$/m);
    // Without -i the lone dot ended the message.
    assert.match(data, /\r\n\r\nline one\r\n$/);
  });

  test('sendmail exits 67 for a refused recipient and 64 without recipients', async () => {
    const bin = `${JSON.stringify(process.execPath)} ${JSON.stringify(LOGMTA_BIN)}`;
    const refused = await sendmail(
      `printf 'Subject: x\\n\\nx\\n' | ${bin} sendmail --config ${JSON.stringify(cfg)} nobody@localhost`,
    );
    assert.equal(refused.code, 67, refused.stderr);
    assert.match(refused.stderr, /550 .*user unknown/);
    const none = await sendmail(
      `printf 'Subject: x\\n\\nx\\n' | ${bin} sendmail -t --config ${JSON.stringify(cfg)}`,
    );
    assert.equal(none.code, 64);
    const ok = await sendmail(
      `printf 'Subject: x\\n\\nx\\n' | ${bin} sendmail -i -v --config ${JSON.stringify(cfg)} alice@localhost`,
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^queued as [0-9A-F]{13}\n$/);
  });

  test('queue list --lane takes a retry lane by its delay (retry-5m is retry-300s) and refuses a name that is no lane', async () => {
    const byName = await listJson(['--lane', 'retry-300s']);
    assert.equal(byName.length, 3);
    assert.deepEqual(
      (await listJson(['--lane', 'retry-5m'])).map((m) => m.id),
      byName.map((m) => m.id),
    );
    const bad = await queue(['list', '--lane', 'retyr']);
    assert.equal(bad.code, 1, bad.stdout);
    assert.match(bad.stderr, /not a lane: "retyr"/);
  });

  test('hold and delete, then SIGKILL: after recovery the held message is held and the deleted one gone', async () => {
    const before = await listJson(['--lane', 'retry']);
    const [a, b, c] = before.map((m) => m.id);
    let r = await queue(['hold', a!]);
    assert.equal(r.code, 0, r.stderr);
    r = await queue(['delete', b!]);
    assert.equal(r.code, 0, r.stderr);
    daemon!.kill('SIGKILL');
    await daemon!.exited;
    // The crash left the control socket behind; the next start must clear it.
    assert.ok(lstatSync(join(dir, 'data', 'admin.sock')).isSocket());
    daemon = await spawnDaemon({ dir, args: ['--config', cfg] });
    const after = await listJson();
    const byId = new Map(after.map((m) => [m.id, m]));
    assert.equal(byId.get(a!)?.pieces[0]?.lane, 'hold');
    assert.ok(byId.get(a!)!.pieces[0]!.history.some((h) => h.ev === 'held by operator'));
    assert.equal(byId.has(b!), false);
    assert.ok(byId.has(c!));
    assert.notEqual(byId.get(c!)!.pieces[0]!.laneKind, 'hold');
  });

  test('release, then SIGKILL: the message stays released after recovery', async () => {
    const [held] = await listJson(['--lane', 'hold']);
    assert.ok(held);
    const r = await queue(['release', held.id]);
    assert.equal(r.code, 0, r.stderr);
    daemon!.kill('SIGKILL');
    await daemon!.exited;
    daemon = await spawnDaemon({ dir, args: ['--config', cfg] });
    const [m] = (await listJson()).filter((x) => x.id === held.id);
    assert.ok(m);
    assert.notEqual(m.pieces[0]!.lane, 'hold');
    assert.deepEqual(
      m.pieces[0]!.history.map((h) => h.ev).filter((e) => e.endsWith('by operator')),
      ['held by operator', 'released by operator'],
    );
  });

  test('with no daemon running, queue exits 69 and sendmail 75 (try again later)', async () => {
    await daemon!.stop(5_000);
    daemon = undefined;
    assert.equal(existsSync(join(dir, 'data', 'admin.sock')), false);
    const q = await queue(['list']);
    assert.equal(q.code, 69);
    assert.match(q.stderr, /is logmta serve running\?/);
    const bin = `${JSON.stringify(process.execPath)} ${JSON.stringify(LOGMTA_BIN)}`;
    const s = await sendmail(
      `printf 'x\\n' | ${bin} sendmail --config ${JSON.stringify(cfg)} alice@localhost`,
    );
    assert.equal(s.code, 75);
  });
});
