// A real redis-server (Debian's `redis-server`) for cluster tests: on 127.0.0.1 at a free port,
// no persistence, its own temp dir. It can be killed (SIGKILL, as an outage) and started again on
// the same port, empty (as after a crash without persistence) unless `keep` data was asked for.
// Invariant: stop() leaves no redis-server running; a server whose test forgot it is SIGKILLed
// when the test process exits.
// Fails: start() rejects with the server's output when it does not become ready in time.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedPort } from './daemon.js';
import { toolPath } from './tools.js';

/** The reason redis tests skip, or undefined when redis-server is installed. */
export function redisMissing(): string | undefined {
  return toolPath('redis-server') === undefined
    ? 'redis-server not installed (Debian package redis-server)'
    : undefined;
}

const live = new Set<ChildProcess>();
let hooked = false;

export class RedisServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  readonly dir = mkdtempSync(join(tmpdir(), 'logmta-redis-'));

  private constructor(
    readonly port: number,
    /** requirepass of the server, when it has one. */
    readonly password?: string,
    /** The port of the master this server replicates (a replica for Sentinel failover tests). */
    readonly replicaOf?: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  static async start(opts: { password?: string; replicaOf?: number } = {}): Promise<RedisServer> {
    for (let attempt = 0; ; attempt++) {
      const r = new RedisServer(await closedPort(), opts.password, opts.replicaOf);
      try {
        await r.start();
        return r;
      } catch (e) {
        rmSync(r.dir, { recursive: true, force: true });
        if (attempt >= 3) throw e;
      }
    }
  }

  /**
   * A Sentinel (redis-server --sentinel) monitoring this server as master `name` (quorum 1: it
   * alone decides a failover, 1 s after the master stops answering), on a free port; stopped with
   * the returned function. `waitFor` resolves once the Sentinel's output has shown `text` (an
   * event such as "+slave" or "+switch-master"), rejecting after `ms`.
   */
  async sentinel(
    name: string,
  ): Promise<{ port: number; stop(): Promise<void>; waitFor(text: string, ms: number): Promise<void> }> {
    const bin = toolPath('redis-server');
    if (!bin) throw new Error('redis-server not installed');
    const port = await closedPort();
    const conf = join(this.dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      `port ${port}\nbind 127.0.0.1\nprotected-mode no\ndir ${this.dir}\n` +
        `sentinel monitor ${name} 127.0.0.1 ${this.port} 1\nsentinel down-after-milliseconds ${name} 1000\n` +
        `sentinel failover-timeout ${name} 10000\n` +
        (this.password !== undefined ? `sentinel auth-pass ${name} ${this.password}\n` : ''),
    );
    const child = spawn(bin, [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const waitFor = (text: string, ms: number): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        if (out.includes(text)) return resolve();
        const timer = setTimeout(() => {
          done();
          reject(new Error(`sentinel did not report ${text} in ${ms} ms:\n${out}`));
        }, ms);
        const onData = (): void => {
          if (!out.includes(text)) return;
          done();
          resolve();
        };
        const onExit = (): void => {
          done();
          reject(new Error(`sentinel exited:\n${out}`));
        };
        const done = (): void => {
          clearTimeout(timer);
          child.stdout?.off('data', onData);
          child.off('exit', onExit);
        };
        // Registered after the accumulating listener, so `out` already has the new bytes.
        child.stdout?.on('data', onData);
        child.once('exit', onExit);
      });
    await waitFor('+monitor master', 10_000);
    return {
      port,
      waitFor,
      async stop() {
        child.kill('SIGKILL');
        await exited;
        live.delete(child);
      },
    };
  }

  /** (Re)starts the server on its port; resolves once it accepts connections. */
  async start(): Promise<void> {
    const bin = toolPath('redis-server');
    if (!bin) throw new Error('redis-server not installed');
    const child = spawn(
      bin,
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
        '--protected-mode',
        'no',
        ...(this.password !== undefined ? ['--requirepass', this.password] : []),
        ...(this.replicaOf !== undefined ? ['--replicaof', '127.0.0.1', String(this.replicaOf)] : []),
        ...(this.replicaOf !== undefined && this.password !== undefined
          ? ['--masterauth', this.password]
          : []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    live.add(child);
    if (!hooked) {
      hooked = true;
      process.once('exit', () => {
        for (const c of live) c.kill('SIGKILL');
      });
    }
    this.exited = new Promise((r) =>
      child.once('exit', () => {
        live.delete(child);
        r();
      }),
    );
    let out = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`redis-server did not start:\n${out}`));
      }, 10_000);
      const onData = (d: Buffer): void => {
        out += d.toString();
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      child.once('exit', () => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited:\n${out}`));
      });
    });
  }

  /** SIGKILLs the server (an outage); resolves once it is gone. */
  async kill(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
