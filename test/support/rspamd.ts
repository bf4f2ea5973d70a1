// A real rspamd (Debian's package) for tests: its proxy worker in milter mode, scanning by itself
// (self_scan), listening on a unix socket in a temp dir, with a minimal local configuration —
// no Redis, no DNS (an unreachable resolver), GTUBE test patterns on, and a small Lua rule file
// that turns Subject keywords into the actions the tests need:
//   LOGMTA-SOFT        soft reject (451 4.7.1)
//   LOGMTA-EDIT        milter edits: add/insert/remove headers, change sender, add/remove recipients
//   LOGMTA-QUARANTINE  reject as quarantine (SMFIR_QUARANTINE, then accept)
//   LOGMTA-DISCARD     reject as discard (SMFIR_DISCARD)
// Invariant: stop() ends the whole process group and removes the dir.
// Fails: start() rejects with rspamd's output when it does not listen within 60 s.
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { hasTool, makeTempDir } from './daemon.js';
import { systemUser } from './system-user.js';

export const RSPAMD_GTUBE_REJECT = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';
export const RSPAMD_GTUBE_ADD_HEADER = 'YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

const RULES = `
local function subject(task)
  return task:get_header('Subject') or ''
end
rspamd_config:register_symbol({
  name = 'LOGMTA_TEST',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local s = subject(task)
    if s:find('LOGMTA-SOFT', 1, true) then
      task:set_pre_result('soft reject', 'greylisted by the test, try again later')
    elseif s:find('LOGMTA-EDIT', 1, true) then
      task:set_milter_reply({
        add_headers = {
          ['X-Test-Added'] = 'added by rspamd',
          ['X-Test-Top'] = { value = 'inserted at the top', order = 0 },
        },
        remove_headers = { ['X-Remove-Me'] = 1 },
        change_from = 'changed@sender.example',
        add_rcpt = { 'added@local.test' },
        del_rcpt = { 'removed@local.test' },
      })
    elseif s:find('LOGMTA-QUARANTINE', 1, true) then
      task:set_milter_reply({ reject = 'quarantine' })
      task:set_pre_result('reject', 'held for review')
    elseif s:find('LOGMTA-DISCARD', 1, true) then
      task:set_milter_reply({ reject = 'discard' })
      task:set_pre_result('reject', 'dropped')
    end
  end
})
`;

export interface Rspamd {
  /** The milter socket path. */
  socket: string;
  /** "unix:<socket>" for a [[milter]] address. */
  address: string;
  stop(): Promise<void>;
  output(): string;
}

export function rspamdMissing(): string | undefined {
  return hasTool('rspamd') ? undefined : 'rspamd not installed';
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((res) => {
    const s = connect({ path }, () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

export async function startRspamd(): Promise<Rspamd> {
  const dir = makeTempDir('logmta-rspamd-');
  for (const d of ['db', 'run']) mkdirSync(join(dir, d));
  const socket = join(dir, 'milter.sock');
  writeFileSync(join(dir, 'rules.lua'), RULES);
  writeFileSync(
    join(dir, 'rspamd.conf'),
    `
options {
  pidfile = "${dir}/run/rspamd.pid";
  dbdir = "${dir}/db";
  tempdir = "${dir}/run";
  enable_test_patterns = true;
  filters = "";
  dns { nameserver = ["127.0.0.1:9"]; timeout = 1s; retransmits = 1; }
}
lua = "${dir}/rules.lua";
logging { type = "console"; level = "notice"; }
actions { reject = 15; add_header = 6; greylist = 4; }
worker "rspamd_proxy" {
  bind_socket = "${socket} mode=0666";
  milter = yes;
  timeout = 60s;
  count = 1;
  upstream "local" { default = yes; self_scan = yes; }
}
`,
  );
  const root = process.getuid?.() === 0;
  if (root) {
    // rspamd will not run as root; its workers run as Debian's _rspamd user.
    chmodSync(dir, 0o755);
    const { uid, gid } = systemUser('_rspamd');
    for (const p of [dir, join(dir, 'db'), join(dir, 'run')]) chownSync(p, uid, gid);
  }
  const args = ['-f', '-c', join(dir, 'rspamd.conf'), ...(root ? ['-u', '_rspamd', '-g', '_rspamd'] : [])];
  const child: ChildProcess = spawn('rspamd', args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  child.once('exit', () => (exited = true));
  const stop = async (): Promise<void> => {
    if (!exited && child.pid !== undefined) {
      const gone = new Promise<void>((r) => child.once('exit', () => r()));
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {}
      const t = setTimeout(() => {
        try {
          process.kill(-(child.pid as number), 'SIGKILL');
        } catch {}
      }, 5_000);
      await gone;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const end = Date.now() + 60_000;
  while (!(existsSync(socket) && (await canConnect(socket)))) {
    if (exited || Date.now() > end) {
      await stop();
      throw new Error(`rspamd did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { socket, address: `unix:${socket}`, stop, output: () => out };
}
