// Running the real fetchmail against a test daemon: a temp HOME with a 0600 rc file, foreground,
// no syslog, verbose; killed after a timeout. Used by the fetchmail interop tests.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FetchmailRun {
  code: number | null;
  output: string;
}

/** Runs `fetchmail -f rc --nodetach --nosyslog -v` with `rc` as its run control file. */
export function runFetchmail(rc: string, timeoutMs = 20_000): Promise<FetchmailRun> {
  const home = mkdtempSync(join(tmpdir(), 'logmta-fetchmail-'));
  const rcFile = join(home, '.fetchmailrc');
  writeFileSync(rcFile, rc, { mode: 0o600 });
  const child = spawn(
    'fetchmail',
    [
      '-f',
      rcFile,
      '--nodetach',
      '--nosyslog',
      '-v',
      '--pidfile',
      join(home, 'pid'),
      '--idfile',
      join(home, 'ids'),
    ],
    {
      env: { ...process.env, HOME: home, FETCHMAILHOME: home, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', (e) => {
      clearTimeout(timer);
      rmSync(home, { recursive: true, force: true });
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      rmSync(home, { recursive: true, force: true });
      resolve({ code, output });
    });
  });
}
