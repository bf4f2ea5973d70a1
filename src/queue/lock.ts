// One process per queue directory. Two daemons appending to the same lanes would interleave
// records and break every invariant, so a queue directory carries `owner.pid`: the process id
// of the daemon using it. Crash-only: nothing removes the file on exit; a start that finds the
// file naming a process that is gone simply takes it over. A live process with that id (the
// owner, or an unrelated process that reused the id after a crash) makes the start fail with
// QUEUE_LOCKED, naming the file so the operator can check and remove it.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MtaError } from '../errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but belongs to someone else — still alive.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Claims `dir` for this process, or throws QUEUE_LOCKED if another live process holds it. */
export function lockQueueDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'owner.pid');
  let other: number | undefined;
  try {
    other = Number.parseInt(readFileSync(file, 'utf8'), 10);
  } catch {
    other = undefined;
  }
  if (other !== undefined && Number.isInteger(other) && other > 0 && other !== process.pid && alive(other)) {
    throw new MtaError(
      'QUEUE_LOCKED',
      'permanent',
      `queue directory ${dir} is in use by process ${other} (${file}); if that process is not logmta, remove the file`,
    );
  }
  writeFileSync(file, `${process.pid}\n`, { mode: 0o600 });
}
