// SIGHUP to `logmta serve`, as `systemctl reload` or a postmaster's `kill -HUP` sends it: the
// configuration is read again and applied by a restart in place — mail deferred under the old
// routes goes out under the new ones — while an invalid configuration is refused and the daemon
// runs on, still taking mail. Before this, SIGHUP killed the daemon (Node's default action).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { runLogmta, type SpawnedDaemon, spawnDaemon, waitFor } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { reservePort } from '../scenarios/kit.js';

/** The SMTP port of the daemon's latest start (a reload prints its addresses again). */
function smtpPort(d: SpawnedDaemon): number {
  const all = [...d.stderr().matchAll(/SMTP on 127\.0\.0\.1:(\d+)/g)];
  return Number(all[all.length - 1]![1]);
}

function logged(d: SpawnedDaemon, msg: string): number {
  return d
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{') && (JSON.parse(l) as { msg?: string }).msg === msg).length;
}

describe('logmta serve and SIGHUP', () => {
  let d: SpawnedDaemon | undefined;
  let sink: SmtpSink | undefined;
  after(async () => {
    d?.kill('SIGKILL');
    await d?.exited;
    await sink?.close();
  });

  test('a reload applies the new routes; a bad configuration is refused and the daemon runs on', async () => {
    const down = await reservePort();
    // A fixed port, as in production: the restart in place must bind it again.
    const smtp = await reservePort();
    d = await spawnDaemon({
      toml: `
[smtp]
listen = ["127.0.0.1:${smtp}"]
relay_networks = ["127.0.0.0/8"]
[queue]
retry = ["1h"]
[[route]]
domain = "c.test"
host = "127.0.0.1:${down}"
`,
    });
    const cfg = d.configFile!;
    await sendMail(smtpPort(d), { from: 'a@x.test', to: ['late@c.test'], subject: 'before' });
    await waitFor(() => /"status":"deferred"/.test(d!.stdout()), 'the mail deferred (its host is down)');

    // The route now points at a host that works; the postmaster reloads.
    sink = await SmtpSink.start();
    writeFileSync(cfg, readFileSync(cfg, 'utf8').replace(`127.0.0.1:${down}`, `127.0.0.1:${sink.port}`));
    d.kill('SIGHUP');
    await waitFor(() => logged(d!, 'reloaded') === 1, 'the reload done', 20_000);
    assert.equal(smtpPort(d), smtp, 'the same port again');
    const flush = await runLogmta(['queue', 'flush', '--config', cfg]);
    assert.equal(flush.code, 0, flush.stdout + flush.stderr);
    await waitFor(() => sink!.transactions.length === 1, 'the deferred mail delivered by the new route');
    assert.deepEqual(sink.transactions[0]!.recipients, ['late@c.test']);

    // A broken edit: refused, the daemon keeps running on what it had, and takes mail.
    const good = readFileSync(cfg, 'utf8');
    writeFileSync(cfg, `${good}\n[queue]\nno_such_key = 1\n`);
    d.kill('SIGHUP');
    await waitFor(() => /reload refused/.test(d!.stdout()), 'the reload refused');
    assert.equal(d.child.exitCode, null, 'still running');
    await sendMail(smtpPort(d), { from: 'a@x.test', to: ['next@c.test'], subject: 'after' });
    await waitFor(
      () => sink!.transactions.length === 2,
      'new mail delivered on the old (good) configuration',
    );
    assert.equal(logged(d, 'reloaded'), 1);

    // SIGTERM still stops it cleanly after the reloads.
    writeFileSync(cfg, good);
    d.kill('SIGTERM');
    const exit = await d.exited;
    assert.equal(exit.code, 0, JSON.stringify(exit));
  });
});
