// `logmta sendmail` as cron and mail(1) call it: with a bare user name for a recipient
// (MAILTO=root), which sendmail and Postfix complete with the local domain ($myorigin). Without
// that the mail of every cron job was refused with "no recipients" (exit 64) and lost. Also:
// a recipient argument that is no address at all is a malformed address (exit 65), not "no
// recipients", and nothing is queued for it.
// Drives a real `logmta serve` and the real CLI from a shell, as cron does.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  LOGMTA_BIN,
  maildirMessages,
  makeTempDir,
  runTool,
  type SpawnedDaemon,
  spawnDaemon,
  waitFor,
} from '../support/daemon.js';

describe('logmta sendmail for cron and scripts', () => {
  const dir = makeTempDir('logmta-sendmail-cron-');
  let daemon: SpawnedDaemon;
  let cfg = '';
  const bin = `${JSON.stringify(process.execPath)} ${JSON.stringify(LOGMTA_BIN)}`;
  const sh = (script: string) => runTool('bash', ['-c', script], { cwd: dir });
  const mailbox = (user: string) => maildirMessages(join(daemon.dataDir, 'mail', user));

  before(async () => {
    daemon = await spawnDaemon({
      dir,
      toml: `
hostname = "box.test"
[[local]]
domain = "office.test"
users = ["root", "ops"]
`,
    });
    cfg = JSON.stringify(daemon.configFile!);
  });

  after(async () => {
    await daemon.stop(2_000);
  });

  test("cron's own command line (MAILTO=root) delivers the job's output to root's mailbox", async () => {
    // Debian cron runs: sendmail -i -FCronDaemon -B8BITMIME -oem <MAILTO>
    const r = await sh(
      `printf 'To: root\\nSubject: Cron <root@box> backup\\n\\nbackup done\\n' | ${bin} sendmail --config ${cfg} -i -FCronDaemon -B8BITMIME -oem root`,
    );
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => mailbox('root').length === 1, "the cron mail in root's mailbox");
    const [m] = mailbox('root');
    assert.match(m!, /^Delivered-To: root@office\.test$/m);
    // Without -f the sender is root at the same local domain, so a bounce of it comes back here
    // (hostname box.test is no domain this host takes).
    assert.match(m!, /^Return-Path: <root@office\.test>$/m);
    assert.match(m!, /^From: "CronDaemon" <root@office\.test>$/m);
    assert.match(m!, /^Subject: Cron <root@box> backup$/m);
  });

  test('-t takes a bare name from To: and completes it with the local domain', async () => {
    const r = await sh(
      `printf 'To: ops\\nSubject: report\\n\\nall good\\n' | ${bin} sendmail --config ${cfg} -t`,
    );
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => mailbox('ops').length === 1, "the report in ops's mailbox");
  });

  test('a recipient argument that is not an address exits 65 before anything is handed over', async () => {
    const r = await sh(
      `printf 'Subject: x\\n\\nx\\n' | ${bin} sendmail --config ${cfg} 'not an address' root`,
    );
    assert.equal(r.code, 65, r.stderr);
    assert.match(r.stderr, /not an address/);
  });
});
