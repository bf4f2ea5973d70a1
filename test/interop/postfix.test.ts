// Interop with a real Postfix (Debian package), run as a PRIVATE instance: its own
// config_directory, queue_directory and data_directory under a temp dir, listening only on
// 127.0.0.1:<free port>, started with `postfix -c DIR start` and stopped in `after`.
// Topology: logmta relays everything to Postfix; Postfix sends sink.test to an SmtpSink and
// lm.test (logmta's local domain) back to logmta, which writes it to a Maildir.
// Skipped (with the reason) when postfix is not installed or we are not root (Postfix's master
// must start as root to drop to its mail_owner).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SmtpSink } from '../support/sink.js';
import { hasTool } from '../support/tools.js';
import { parseDsn } from '../support/dsn.js';
import { sendMail } from '../support/inject.js';
import { startRelayDaemon, type TestDaemon } from '../support/daemon.js';
import { waitFor } from '../support/wait.js';
import { freeTcpPort } from '../support/ports.js';

const POSTFIX = '/usr/sbin/postfix';

function skipReason(): string | undefined {
  if (!hasTool(POSTFIX)) return 'postfix is not installed';
  if (process.getuid?.() !== 0) return 'a private postfix instance must be started as root';
  const master = ['/etc/postfix/master.cf.orig', '/etc/postfix/master.cf'].find((f) => existsSync(f));
  if (!master) return 'no master.cf to derive the private one from';
  return undefined;
}

/** One private Postfix instance. */
class PrivatePostfix {
  readonly dir: string;
  readonly etc: string;
  port = 0;

  constructor() {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'logmta-pfx-'));
    // Postfix's daemons run as its mail_owner and must traverse the directory.
    chmodSync(this.dir, 0o755);
    this.etc = path.join(this.dir, 'etc');
    mkdirSync(this.etc);
    mkdirSync(path.join(this.dir, 'spool'));
    mkdirSync(path.join(this.dir, 'data'));
    const pf = Number(execFileSync('id', ['-u', 'postfix']).toString().trim());
    chownSync(path.join(this.dir, 'data'), pf, 0);
  }

  async start(transports: Record<string, number>, extra = ''): Promise<void> {
    this.port = await freeTcpPort();
    const d = this.dir;
    const transport = Object.entries(transports)
      .map(([dom, port]) => `${dom}=smtp:[127.0.0.1]:${port}`)
      .join(', ');
    writeFileSync(
      path.join(this.etc, 'main.cf'),
      [
        'compatibility_level = 3.6',
        'myhostname = pf.test',
        'mydomain = pf.test',
        'myorigin = $myhostname',
        'mydestination =',
        'local_recipient_maps =',
        'alias_maps =',
        'alias_database =',
        'inet_interfaces = 127.0.0.1',
        'inet_protocols = ipv4',
        'mynetworks = 127.0.0.0/8',
        `relay_domains = ${Object.keys(transports).join(', ')}`,
        'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination',
        `transport_maps = inline:{ ${transport} }`,
        'smtp_tls_security_level = none',
        'smtpd_tls_security_level = none',
        'biff = no',
        'append_dot_mydomain = no',
        'delay_warning_time = 0',
        `queue_directory = ${d}/spool`,
        `data_directory = ${d}/data`,
        `maillog_file = ${d}/postfix.log`,
        `maillog_file_prefixes = ${d}`,
        extra,
        '',
      ].join('\n'),
    );
    const master = ['/etc/postfix/master.cf.orig', '/etc/postfix/master.cf'].find((f) => existsSync(f))!;
    const lines = readFileSync(master, 'utf8')
      .split('\n')
      .filter((l) => /^[a-z0-9]/.test(l) && !/\spipe$/.test(l) && !/\sinet\s/.test(l))
      // No chroot: the jail would need copies of files.
      .map((l) => l.replace(/^(\S+\s+\S+\s+\S+\s+\S+\s+)y(\s)/, '$1n$2'));
    lines.unshift(`127.0.0.1:${this.port} inet n - n - - smtpd`);
    writeFileSync(path.join(this.etc, 'master.cf'), `${lines.join('\n')}\n`);
    // If this process dies without running `after`, still stop our instance (sync, on exit).
    process.once('exit', this.stopOnExit);
    const r = spawnSync(POSTFIX, ['-c', this.etc, 'start'], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`postfix start failed: ${r.stderr}\n${this.log()}`);
    await waitFor(() => this.accepting(), 'postfix to listen', 10000).catch((e) => {
      throw new Error(`${(e as Error).message}\n${this.log()}`);
    });
  }

  private probing = false;
  private up = false;
  /** Polled by waitFor: true once a TCP connect succeeds. */
  accepting(): boolean {
    if (!this.probing && !this.up) {
      this.probing = true;
      const s = net.connect(this.port, '127.0.0.1');
      s.on('connect', () => {
        this.up = true;
        s.destroy();
      });
      s.on('error', () => {});
      s.on('close', () => {
        this.probing = false;
      });
    }
    return this.up;
  }

  /** The last lines of the instance's log, for failure messages. */
  log(): string {
    try {
      return readFileSync(path.join(this.dir, 'postfix.log'), 'utf8').split('\n').slice(-25).join('\n');
    } catch {
      return '(no postfix log)';
    }
  }

  private readonly stopOnExit = (): void => {
    spawnSync(POSTFIX, ['-c', this.etc, 'stop'], { encoding: 'utf8' });
  };

  async stop(): Promise<void> {
    process.off('exit', this.stopOnExit);
    spawnSync(POSTFIX, ['-c', this.etc, 'stop'], { encoding: 'utf8' });
    const pidFile = path.join(this.dir, 'spool', 'pid', 'master.pid');
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : 0;
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    if (pid > 0) {
      await waitFor(() => !alive(), 'postfix master to exit', 10000).catch(() => {
        // Our own instance only: its master's pid from its own pid file.
        process.kill(pid, 'SIGKILL');
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function maildirMessages(root: string, user: string): string[] {
  const dir = path.join(root, 'mail', user, 'new');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((f) => readFileSync(path.join(dir, f), 'utf8'));
}

const reason = skipReason();

describe('interop with a private Postfix instance', { skip: reason ?? false }, () => {
  let pf: PrivatePostfix;
  let sink: SmtpSink;
  let lm: TestDaemon;

  before(async () => {
    sink = await SmtpSink.start({ hostname: 'sink.test' });
    pf = new PrivatePostfix();
    // logmta: lm.test is local (Maildir); everything else goes to Postfix. Postfix's port is
    // only known after it starts, and Postfix needs logmta's port: start logmta with a
    // placeholder route first, then Postfix, then logmta again with the real route.
    const probe = await startRelayDaemon('[[local]]\ndomain = "lm.test"\n');
    const lmPort = probe.port;
    await probe.stop();
    await pf.start(
      { 'sink.test': sink.port, 'lm.test': lmPort },
      'smtpd_recipient_restrictions = check_recipient_access inline:{ { bad@sink.test = 550 5.1.1 no such user } }, permit',
    );
    lm = await startRelayDaemon(
      `[smtp]\nlisten = ["127.0.0.1:${lmPort}"]\nrelay_networks = ["127.0.0.0/8"]\n[queue]\nretry = ["1s"]\n` +
        `[[local]]\ndomain = "lm.test"\n[[route]]\ndomain = "*"\nhost = "127.0.0.1:${pf.port}"\n`,
    );
  });

  after(async () => {
    await lm?.stop();
    await pf?.stop();
    await sink?.close();
  });

  test('logmta relays into Postfix, which delivers every message once', async () => {
    const n = 10;
    // One at a time, each handed to Postfix before the next: the connection is reused.
    for (let i = 0; i < n; i++) {
      await sendMail(lm.port, { from: 'alice@lm.test', to: [`u${i}@sink.test`], subject: `pf ${i}` });
      const rcpt = `u${i}@sink.test`;
      await waitFor(
        () => lm.outcomes(rcpt).some((o) => o.msg === 'delivered'),
        `${rcpt} to reach Postfix`,
        10000,
      );
    }
    await waitFor(() => sink.transactions.length >= n, 'Postfix to deliver', 20000).catch((e) => {
      throw new Error(`${(e as Error).message}\n${pf.log()}`);
    });
    const got = sink.transactions.filter((t) => t.recipients[0]?.startsWith('u'));
    assert.equal(got.length, n);
    assert.deepEqual(new Set(got.map((t) => t.recipients[0])).size, n);
    for (const t of got) {
      assert.equal(t.sender, 'alice@lm.test');
      const text = t.data.toString();
      assert.match(
        text,
        /Received: from relay\.test \(localhost \[127\.0\.0\.1\]\)\r\n\s+by pf\.test \(Postfix\)/,
      );
      assert.match(text, /Received: from injector\.test/);
    }
    // logmta reused its connection to Postfix for every message after the first.
    assert.equal(lm.daemon.pool.stats.connections, 1, JSON.stringify(lm.daemon.pool.stats));
    assert.equal(lm.daemon.pool.stats.reused, n - 1);
  });

  test('Postfix relays into logmta, which delivers to a Maildir', async () => {
    await sendMail(pf.port, {
      from: 'someone@sink.test',
      to: ['bob@lm.test'],
      subject: 'via postfix',
      body: 'Hi Bob.\r\n',
    });
    await waitFor(() => maildirMessages(lm.dataDir, 'bob').length === 1, 'the Maildir file', 20000).catch(
      (e) => {
        throw new Error(`${(e as Error).message}\n${pf.log()}`);
      },
    );
    const msg = maildirMessages(lm.dataDir, 'bob')[0]!;
    assert.match(msg, /^Return-Path: <someone@sink\.test>\r?\nDelivered-To: bob@lm\.test\r?\n/);
    assert.match(msg, /Received: from pf\.test/);
    assert.match(msg, /Subject: via postfix/);
    assert.match(msg, /Hi Bob\./);
  });

  test('a recipient Postfix refuses is bounced by logmta to the sender', async () => {
    await sendMail(lm.port, { from: 'carol@lm.test', to: ['bad@sink.test'] });
    await waitFor(() => maildirMessages(lm.dataDir, 'carol').length === 1, 'the bounce', 10000);
    const dsn = parseDsn(Buffer.from(maildirMessages(lm.dataDir, 'carol')[0]!));
    assert.equal(dsn.recipients[0]?.action, 'failed');
    assert.equal(dsn.recipients[0]?.status, '5.1.1');
    assert.match(dsn.recipients[0]?.['diagnostic-code'] ?? '', /^smtp; 550 5\.1\.1 .*no such user/);
  });

  test('NOTIFY=SUCCESS is passed to Postfix, whose "relayed" notice comes back through logmta', async () => {
    await sendMail(lm.port, {
      from: 'dave@lm.test',
      to: [{ address: 'n@sink.test', notify: ['SUCCESS'] }],
      envid: 'PF-1',
    });
    await waitFor(() => maildirMessages(lm.dataDir, 'dave').length >= 1, "Postfix's notice", 20000).catch(
      (e) => {
        throw new Error(`${(e as Error).message}\n${pf.log()}`);
      },
    );
    await new Promise((r) => setTimeout(r, 300));
    const all = maildirMessages(lm.dataDir, 'dave');
    assert.equal(all.length, 1, 'one notice, from Postfix; none from logmta (Postfix offers DSN)');
    const dsn = parseDsn(Buffer.from(all[0]!));
    assert.match(dsn.message['reporting-mta'] ?? '', /pf\.test/);
    assert.equal(dsn.message['original-envelope-id'], 'PF-1');
    assert.equal(dsn.recipients[0]?.action, 'relayed');
  });
});

if (reason) test(`postfix interop skipped: ${reason}`, { skip: reason }, () => {});
