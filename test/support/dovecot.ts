// A real Dovecot (Debian's dovecot-core and dovecot-lmtpd) for tests: LMTP only, with a private
// configuration in a temp dir — its own base_dir and state_dir, Maildirs under the dir, users
// from a passwd-file (with optional per-user quota), listening on a unix socket and on
// 127.0.0.1 at a free port. Mail is read back with `doveadm fetch`, as an operator would.
// Invariant: stop() ends the master process (and its children) and removes the dir.
// Fails: start rejects with Dovecot's log when it does not listen within 15 s.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { hasTool, makeTempDir, runTool } from './daemon.js';
import { freeTcpPort } from './ports.js';
import { systemUser } from './system-user.js';

export interface DovecotUser {
  name: string;
  /** A quota rule such as "*:storage=1K" (Dovecot's quota plugin), default none. */
  quota?: string;
}

export interface Dovecot {
  /** The LMTP unix socket. */
  socket: string;
  /** The LMTP TCP port on 127.0.0.1. */
  port: number;
  dir: string;
  /** The user's INBOX messages as `doveadm fetch` returns them (text of each, in order). */
  fetch(user: string): Promise<string[]>;
  log(): string;
  stop(): Promise<void>;
}

export function dovecotMissing(): string | undefined {
  if (!hasTool('dovecot') || !hasTool('doveadm')) return 'dovecot not installed';
  if (!existsSync('/usr/lib/dovecot/lmtp')) return 'dovecot-lmtpd not installed';
  return undefined;
}

const listening = (port: number): Promise<boolean> =>
  new Promise((res) => {
    const s = connect(port, '127.0.0.1', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });

export async function startDovecot(o: {
  users: DovecotUser[];
  /** Over-quota is a 452 4.2.2 (retry) instead of 552 5.2.2 (bounce). */
  quotaFullTempfail?: boolean;
  /** The TCP port to listen on (a test that started the MTA first); default a free one. */
  port?: number;
}): Promise<Dovecot> {
  const dir = makeTempDir('logmta-dovecot-');
  // Dovecot's auth process runs as its internal user and must read the users file.
  chmodSync(dir, 0o755);
  for (const d of ['run', 'state', 'mail']) mkdirSync(join(dir, d));
  const root = process.getuid?.() === 0;
  // Dovecot never delivers as root: as root, mail belongs to "nobody"; otherwise to us.
  const owner = root ? { uid: 65534, gid: 65534 } : { uid: userInfo().uid, gid: userInfo().gid };
  const internal = root ? 'dovecot' : userInfo().username;
  const login = root ? (safeUser('dovenull') ?? internal) : internal;
  chownSync(join(dir, 'mail'), owner.uid, owner.gid);
  writeFileSync(
    join(dir, 'users'),
    o.users
      .map(
        (u) =>
          `${u.name}::${owner.uid}:${owner.gid}::${dir}/mail/${u.name}::${u.quota ? `userdb_quota_rule=${u.quota}` : ''}`,
      )
      .join('\n') + '\n',
    { mode: 0o644 },
  );
  const conf = join(dir, 'dovecot.conf');
  for (let attempt = 0; ; attempt++) {
    const port = o.port ?? (await freeTcpPort());
    writeFileSync(
      conf,
      `base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = logmta-test-${port}
log_path = ${dir}/dovecot.log
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = ${internal}
default_internal_group = ${root ? 'dovecot' : internal}
default_login_user = ${login}
first_valid_uid = 1
auth_username_format = %Ln
mail_location = maildir:~/Maildir
mail_plugins = quota
lmtp_rcpt_check_quota = no
quota_full_tempfail = ${o.quotaFullTempfail ? 'yes' : 'no'}
passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
}
plugin {
  quota = maildir:User quota
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
  inet_listener lmtp {
    address = 127.0.0.1
    port = ${port}
  }
}
service anvil {
  chroot =
}
service stats {
  chroot =
}
`,
    );
    const child: ChildProcess = spawn('dovecot', ['-F', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    let exited = false;
    child.once('exit', () => (exited = true));
    const log = () => {
      try {
        return out + readFileSync(join(dir, 'dovecot.log'), 'utf8');
      } catch {
        return out;
      }
    };
    const end = Date.now() + 15_000;
    while (!exited && Date.now() < end && !(await listening(port)))
      await new Promise((r) => setTimeout(r, 50));
    if (!exited && (await listening(port))) {
      return {
        socket: join(dir, 'run', 'lmtp'),
        port,
        dir,
        log,
        async fetch(user) {
          // doveadm's output has no separator between messages: list the uids, fetch each.
          const doveadm = async (args: string[]) => {
            const r = await runTool('doveadm', ['-c', conf, ...args]);
            if (r.code !== 0) throw new Error(`doveadm ${args[0]} failed (${r.code}): ${r.stderr}`);
            return r.stdout;
          };
          const uids = (await doveadm(['search', '-u', user, 'mailbox', 'INBOX', 'all']))
            .split('\n')
            .map((l) => l.trim().split(/\s+/)[1])
            .filter((u): u is string => u !== undefined && u !== '');
          const out: string[] = [];
          for (const uid of uids) {
            const t = await doveadm(['fetch', '-u', user, 'text', 'mailbox', 'INBOX', 'uid', uid]);
            out.push(t.replace(/^text:\n/, ''));
          }
          return out;
        },
        async stop() {
          if (!exited) {
            const gone = new Promise<void>((r) => child.once('exit', () => r()));
            child.kill('SIGTERM');
            await gone;
          }
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill('SIGKILL');
    if (attempt >= 3) {
      const l = log();
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`dovecot did not start:\n${l}`);
    }
  }
}

function safeUser(name: string): string | undefined {
  try {
    systemUser(name);
    return name;
  } catch {
    return undefined;
  }
}
