// LazyFS for tests: a FUSE file system with its own page cache that keeps every write in memory
// until it is fsynced and, on command, forgets whatever was not (a power cut), crashes itself at
// a chosen operation, or tears a write so that only some of its parts reach the disk.
// The tool is not part of the project: its source sits beside the repository in
// ../shared/tools/lazyfs (for a git worktree, beside the main checkout), and `lazyfsBuildDir()`
// is where scripts/lazyfs-build.sh (run by .ci/run) builds it, outside the repository.
// `findLazyFs()` says why a test must skip: no tool, not built, no /dev/fuse, no fusermount3.
// Invariant: every mount this file starts is unmounted and its process ended when the test
// process exits, even if the test forgot (an exit hook), so no dead mount outlives a run.
// Fails: mount() rejects when LazyFS exits or does not mount within its timeout (with its log);
// a command rejects when LazyFS is gone (ENXIO on the fault FIFO) or too long for its reader.

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { constants, existsSync, mkdirSync, promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { hasTool, REPO_ROOT } from './daemon.js';

/** Where the build of LazyFS is kept between runs (never inside the repository). */
export function lazyfsBuildDir(): string {
  if (process.env.LOGMTA_LAZYFS_BUILD) return process.env.LOGMTA_LAZYFS_BUILD;
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'logmta', 'lazyfs');
}

/** ../shared/tools/lazyfs beside the repository, or beside the main checkout of a worktree. */
export function lazyfsToolDir(): string | undefined {
  const roots = [REPO_ROOT];
  try {
    // In a worktree `.git` is a file: "gitdir: <main>/.git/worktrees/<name>".
    const m = /^gitdir: (.+)$/m.exec(readFileSync(join(REPO_ROOT, '.git'), 'utf8'));
    if (m) roots.push(resolve(m[1]!.trim(), '..', '..', '..'));
  } catch {
    // A normal clone (.git is a directory) or no git at all.
  }
  for (const r of roots) {
    const d = join(r, '..', 'shared', 'tools', 'lazyfs');
    if (existsSync(join(d, 'build.sh'))) return d;
  }
  return undefined;
}

/** The LazyFS binary to run, or the reason a test that needs it must skip. */
export function findLazyFs(): { binary: string } | { skip: string } {
  const tool = lazyfsToolDir();
  if (tool === undefined) return { skip: 'LazyFS not found (../shared/tools/lazyfs beside the repository)' };
  if (!existsSync('/dev/fuse')) return { skip: 'no /dev/fuse on this machine (LazyFS needs FUSE)' };
  if (!hasTool('fusermount3')) return { skip: 'fusermount3 not installed (Debian package fuse3)' };
  const binary = join(lazyfsBuildDir(), 'src', 'lazyfs', 'build', 'lazyfs');
  if (!existsSync(binary))
    return {
      skip: `LazyFS is not built in ${lazyfsBuildDir()} (bash scripts/lazyfs-build.sh builds it; .ci/run does)`,
    };
  return { binary };
}

/** The longest command LazyFS's fault reader takes in one read (it reads 100 bytes at a time). */
const MAX_COMMAND = 99;

const live = new Set<LazyFsMount>();
let hooked = false;
function track(m: LazyFsMount): void {
  live.add(m);
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const x of live) x.killNow();
  });
}

export interface MountOptions {
  binary: string;
  /** The backing directory: the "disk" that survives a power cut. */
  root: string;
  /** Where the file system is mounted. */
  mnt: string;
  /** For the config file and the fault FIFO. */
  work: string;
  /** LazyFS's cache (preallocated at start); default "128mb". */
  cacheSize?: string;
  timeoutMs?: number;
}

export type CrashOp = 'fsync' | 'write' | 'create' | 'unlink';

/** One LazyFS process serving `mnt` from `root`. */
export class LazyFsMount {
  private out = '';
  private gone = false;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly opts: MountOptions,
    private readonly child: ChildProcess,
    private readonly fifo: string,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => this.append(d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => this.append(d));
    this.exited = new Promise((res) =>
      child.once('exit', (code, signal) => {
        this.gone = true;
        res({ code, signal });
      }),
    );
  }

  private append(d: string): void {
    this.out += d;
    if (this.out.length > 1 << 20) this.out = this.out.slice(-(1 << 19));
  }

  /** Mounts LazyFS in the foreground and waits until it serves files and reads fault commands. */
  static async mount(opts: MountOptions): Promise<LazyFsMount> {
    for (const d of [opts.root, opts.mnt, opts.work]) mkdirSync(d, { recursive: true });
    const fifo = join(opts.work, 'faults.fifo');
    if (!existsSync(fifo)) {
      const r = spawnSync('mkfifo', [fifo]);
      if (r.status !== 0) throw new Error(`mkfifo ${fifo} failed: ${r.stderr}`);
    }
    const config = join(opts.work, 'lazyfs.toml');
    // LazyFS takes a --config-path argument containing "-o" (any case) for a FUSE option and
    // falls back to its built-in default, which does not exist here.
    if (/-o/i.test(config)) throw new Error(`LazyFS cannot take a config path containing "-o": ${config}`);
    writeFileSync(
      config,
      [
        '[faults]',
        `fifo_path = "${fifo}"`,
        '[cache]',
        'apply_eviction = false',
        '[cache.simple]',
        `custom_size = "${opts.cacheSize ?? '128mb'}"`,
        'blocks_per_page = 1',
        '[filesystem]',
        'log_all_operations = false',
        'logfile = ""',
        '',
      ].join('\n'),
    );
    const child = spawn(
      opts.binary,
      [opts.mnt, '--config-path', config, '-o', 'modules=subdir', '-o', `subdir=${opts.root}`, '-f'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const m = new LazyFsMount(opts, child, fifo);
    track(m);
    const end = Date.now() + (opts.timeoutMs ?? 20_000);
    while (!(m.mounted() && m.out.includes('waiting for fault commands'))) {
      if (m.gone || Date.now() > end) {
        m.killNow();
        throw new Error(`LazyFS did not mount ${opts.mnt}; its output:\n${m.out}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return m;
  }

  /** Whether `mnt` is a live lazyfs mount (in /proc/mounts). */
  mounted(): boolean {
    const mounts = readFileSync('/proc/mounts', 'utf8');
    return mounts.split('\n').some((l) => {
      const [, point, type] = l.split(' ');
      return point === this.opts.mnt && type === 'fuse.lazyfs';
    });
  }

  get alive(): boolean {
    return !this.gone;
  }

  /** Everything LazyFS printed (its log of faults and commands). */
  output(): string {
    return this.out;
  }

  /** Writes one fault command to LazyFS's FIFO. */
  async command(line: string): Promise<void> {
    if (line.length + 1 > MAX_COMMAND)
      throw new Error(`LazyFS command longer than ${MAX_COMMAND} bytes: ${line}`);
    // Non-blocking: with LazyFS gone there is no reader and the open fails (ENXIO) instead of hanging.
    const fh = await fsp.open(this.fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    try {
      await fh.write(`${line}\n`);
    } finally {
      await fh.close();
    }
  }

  private count(s: string): number {
    return this.out.split(s).length - 1;
  }

  private async waitOutput(s: string, before: number, what: string): Promise<void> {
    const end = Date.now() + 10_000;
    while (this.count(s) <= before) {
      if (this.gone) throw new Error(`LazyFS exited before ${what}; its output:\n${this.out.slice(-4000)}`);
      if (Date.now() > end)
        throw new Error(`LazyFS did not confirm ${what}; its output:\n${this.out.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Forgets every write not yet fsynced, and waits until it has. */
  async clearCache(): Promise<void> {
    const done = 'cache is cleared.';
    const before = this.count(done);
    await this.command('lazyfs::clear-cache');
    await this.waitOutput(done, before, 'clear-cache');
  }

  /**
   * LazyFS loses its cache and exits (SIGKILLs itself) at the next `op` on a path matching
   * `pathRegex`, `timing` before or after the operation.
   */
  async crashAt(timing: 'before' | 'after', op: CrashOp, pathRegex: string): Promise<void> {
    const ok = '=> crash: from regex path';
    const before = this.count(ok);
    await this.command(`lazyfs::crash::timing=${timing}::op=${op}::from_rgx=${pathRegex}`);
    await this.waitOutput(ok, before, 'the crash fault');
  }

  /**
   * The next write to `file` (a path under the backing root, as LazyFS sees it) is split into
   * `parts` equal parts; only the listed ones (1-based) reach the disk, then LazyFS crashes.
   */
  async tornWrite(file: string, parts: number, persist: readonly number[]): Promise<void> {
    const ok = 'configured successfully';
    const before = this.count(ok);
    await this.command(`lazyfs::torn-op::file=${file}::persist=${persist.join(',')}::parts=${parts}`);
    await this.waitOutput(ok, before, 'the torn write');
  }

  /** Unmounts (lazily, so a dead mount goes too) and waits for the process to end. */
  async unmount(): Promise<void> {
    spawnSync('fusermount3', ['-u', '-z', this.opts.mnt], { stdio: 'ignore' });
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await this.exited;
    clearTimeout(t);
    // A LazyFS that died on its own leaves its mount behind until it is unmounted.
    if (this.mounted()) spawnSync('fusermount3', ['-u', '-z', this.opts.mnt], { stdio: 'ignore' });
    live.delete(this);
  }

  /** Synchronous teardown for the exit hook. */
  killNow(): void {
    if (!this.gone) this.child.kill('SIGKILL');
    spawnSync('fusermount3', ['-u', '-z', this.opts.mnt], { stdio: 'ignore' });
    live.delete(this);
  }
}

/** Paths of a lane's segment files under a queue directory, oldest first. */
export async function laneSegmentFiles(queueDir: string, lane: string): Promise<string[]> {
  const dir = join(queueDir, 'lanes', lane);
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  return names
    .filter((n) => /^\d{10}\.seg$/.test(n))
    .sort()
    .map((n) => join(dir, n));
}
