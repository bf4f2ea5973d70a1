// A logmta cluster for tests: one real redis-server and several real `logmta serve` processes on
// loopback, each with its own data dir and the same [cluster] section but for its node name.
// Nodes can be stopped, SIGKILLed and started again on the same data and ports; the control
// socket of each is reachable from the test (admin ops) and `logmta cluster ...` runs as a CLI.
// Invariant: stopAll() leaves no daemon or redis-server running and removes the temp dirs.
// Fails: start-up errors reject with the daemon's stderr (spawnDaemon).

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { AdminClient } from '../../src/cli/client.js';
import { makeTempDir, runLogmta, type SpawnedDaemon, spawnDaemon } from '../support/daemon.js';
import { RedisServer } from '../support/redis.js';
import type { SmtpSink } from '../support/sink.js';
import { collect } from '../../src/odmr/index.js';
import type { ReceivedMessage, ServerHooks } from '../../src/smtp/server/hooks.js';
import { chunksOf } from '../../src/smtp/server/message-data.js';

export const SECRET = 'test-cluster-secret-0123456789';

export interface NodeOptions {
  /** TOML added to every node's configuration (accounts, routes, limits...). */
  toml: string;
  /** Extra [cluster] keys, e.g. 'transfer_interval = "1s"'. */
  cluster?: string;
  /** Extra [smtp] keys. */
  smtp?: string;
  /** Extra [odmr] keys. */
  odmr?: string;
  /** Open the HTTP admin (metrics) on an ephemeral port. */
  admin?: boolean;
  /** How [cluster] names Redis (TOML lines); default the test server's URL. */
  redis?: (server: RedisServer) => string;
  /** Run the test Redis with this password (given to the nodes in redis.pass). */
  redisPassword?: string;
}

export class TestNode {
  daemon: SpawnedDaemon | undefined;
  smtpPort = 0;
  odmrPort = 0;

  constructor(
    readonly name: string,
    readonly dir: string,
    private readonly toml: string,
    private readonly redisPassword?: string,
    /** The cluster secret in its cluster.key (rewritten on each start). */
    public secret = SECRET,
  ) {}

  get configFile(): string {
    return join(this.dir, 'logmta.toml');
  }

  get socket(): string {
    return join(this.dir, 'data', 'admin.sock');
  }

  /** Starts (or restarts on the same data and ports) the daemon. */
  async start(): Promise<void> {
    const smtp = this.smtpPort === 0 ? '127.0.0.1:0' : `127.0.0.1:${this.smtpPort}`;
    const odmr = this.odmrPort === 0 ? '127.0.0.1:0' : `127.0.0.1:${this.odmrPort}`;
    const toml = `hostname = "${this.name}.cluster.test"\n${this.toml}`
      .replace('@SMTP@', smtp)
      .replace('@ODMR@', odmr);
    const d = await spawnDaemon({
      dir: this.dir,
      toml,
      files: {
        'cluster.key': this.secret,
        ...(this.redisPassword !== undefined ? { 'redis.pass': `${this.redisPassword}\n` } : {}),
      },
    });
    this.daemon = d;
    this.smtpPort = d.port;
    const m = /ODMR \(ATRN\) on \S+?:(\d+)/.exec(d.stderr());
    this.odmrPort = m ? Number(m[1]) : 0;
  }

  get running(): boolean {
    return (
      this.daemon !== undefined &&
      this.daemon.child.exitCode === null &&
      this.daemon.child.signalCode === null
    );
  }

  async stop(): Promise<void> {
    await this.daemon?.stop(10_000);
  }

  async kill(): Promise<void> {
    if (!this.daemon) return;
    this.daemon.kill('SIGKILL');
    await this.daemon.exited;
  }

  /** Runs a control-socket op on the running daemon. */
  async op<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const c = await AdminClient.connect(this.socket);
    try {
      return await c.request<T>(op, args);
    } finally {
      c.close();
    }
  }

  /** One figure of GET /metrics (needs `admin`); undefined when absent. */
  async metric(name: string): Promise<number | undefined> {
    const m = /"http":"([^"]+)"/.exec(this.daemon?.stdout() ?? '');
    if (!m) throw new Error('no HTTP admin address in the log (start the cluster with admin: true)');
    const text = await (await fetch(`http://${m[1]}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? undefined : Number(line.slice(name.length + 1));
  }

  /** Live pieces per lane, and messages, from `status`. */
  async status(): Promise<{ messages: number; lanes: Record<string, number> }> {
    return this.op('status');
  }

  async held(domain: string): Promise<number> {
    const s = await this.status();
    return s.lanes[`held-${domain}`] ?? 0;
  }

  /** `logmta cluster ARGS --config <this node's file>`. */
  cli(args: string[]): ReturnType<typeof runLogmta> {
    return runLogmta(['cluster', ...args, '--config', this.configFile]);
  }
}

export class TestCluster {
  readonly nodes = new Map<string, TestNode>();

  private constructor(
    readonly redis: RedisServer,
    private readonly opts: NodeOptions,
  ) {}

  static async start(names: string[], opts: NodeOptions): Promise<TestCluster> {
    const redis = await RedisServer.start(
      opts.redisPassword !== undefined ? { password: opts.redisPassword } : {},
    );
    const c = new TestCluster(redis, opts);
    try {
      for (const n of names) await c.add(n);
    } catch (e) {
      await c.stopAll();
      throw e;
    }
    return c;
  }

  node(name: string): TestNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  /** A node's configuration (`extra`: [cluster] keys of this node only). */
  tomlFor(name: string, extra = ''): string {
    return `
[smtp]
listen = ["@SMTP@"]
${this.opts.smtp ?? ''}
[odmr]
listen = ["@ODMR@"]
${this.opts.odmr ?? ''}
${this.opts.admin ? '[admin]\nlisten = "127.0.0.1:0"\n' : ''}
[cluster]
node = "${name}"
${this.opts.redis ? this.opts.redis(this.redis) : `redis = "${this.redis.url}"`}
${this.opts.redisPassword !== undefined ? 'password_file = "redis.pass"' : ''}
secret_file = "cluster.key"
heartbeat = "500ms"
node_ttl = "2s"
transfer_interval = "1s"
${this.opts.cluster?.includes('redis_timeout') ? '' : 'redis_timeout = "500ms"'}
${this.opts.cluster ?? ''}
${extra}
${this.opts.toml}
`;
  }

  /**
   * Adds and starts a node (`secret`: another cluster secret than the others'; `cluster`: [cluster]
   * keys of this node only, e.g. its advertise).
   */
  async add(name: string, secret = SECRET, cluster = ''): Promise<TestNode> {
    const n = new TestNode(
      name,
      makeTempDir(`logmta-cluster-${name}-`),
      this.tomlFor(name, cluster),
      this.opts.redisPassword,
      secret,
    );
    this.nodes.set(name, n);
    await n.start();
    return n;
  }

  /** Waits until every running node sees every running node alive. */
  async converged(timeoutMs = 15_000): Promise<void> {
    const running = [...this.nodes.values()].filter((n) => n.running);
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await running[0]!.cli(['status', '--json']);
      if (r.code === 0) {
        const s = JSON.parse(r.stdout) as { nodes: Array<{ node: string; alive: boolean }> };
        const alive = new Set(s.nodes.filter((x) => x.alive).map((x) => x.node));
        if (running.every((n) => alive.has(n.name))) return;
      }
      if (Date.now() > end) throw new Error(`cluster did not converge: ${r.stdout}${r.stderr}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  }

  /** The nodes' logs (for a failing test's message). */
  logs(): string {
    return [...this.nodes.values()]
      .map((n) => `--- ${n.name}\n${(n.daemon?.stdout() ?? '').split('\n').slice(-60).join('\n')}`)
      .join('\n');
  }

  async stopAll(): Promise<void> {
    if (process.env.LOGMTA_TEST_CLUSTER_LOGS) process.stderr.write(this.logs());
    await Promise.all([...this.nodes.values()].map((n) => n.stop().catch(() => {})));
    await this.redis.stop();
    for (const n of this.nodes.values()) rmSync(n.dir, { recursive: true, force: true });
  }
}

/** Waits for a sink to have recorded `n` transactions; rejects after `ms` saying how many it has. */
export async function arrived(sink: SmtpSink, n: number, ms = 30_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    sink.waitForTransactions(n),
    new Promise<void>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(`timed out waiting for ${n} messages at the sink (it has ${sink.transactions.length})`),
          ),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Polls `cond` until it holds; rejects naming `what` after `ms`. */
export async function eventually(
  what: string,
  cond: () => Promise<boolean>,
  ms = 30_000,
  every = 100,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** The Subject: of a message as a customer's store or a sink got it. */
export function subjectOf(data: unknown): string {
  const text = Buffer.isBuffer(data) ? data.toString() : Buffer.concat(chunksOf(data)).toString();
  return /Subject: (\S+)/.exec(text)?.[1] ?? '?';
}

/** A customer's mail store in memory: the hooks logmta's ODMR customer (collect) runs with. */
export function memoryStore(): { hooks: ServerHooks; got: ReceivedMessage[] } {
  const got: ReceivedMessage[] = [];
  let n = 0;
  return {
    got,
    hooks: {
      newMessageId: () => `m${++n}`,
      async accept(m) {
        got.push(m);
        return { queueId: m.id };
      },
    },
  };
}

/** The ODMR account "acme" of the cluster tests (collectSubjects logs in as it), for `domains`. */
export function acmeAccount(...domains: string[]): string {
  return `[[odmr.account]]
user = "acme"
password = "acme-secret-123"
domains = ${JSON.stringify(domains)}
`;
}

/** Collects the account "acme" (password acme-secret-123) at a node with ATRN; the subjects got. */
export async function collectSubjects(node: TestNode, domains?: string[]): Promise<string[]> {
  const store = memoryStore();
  await collect({
    host: '127.0.0.1',
    port: node.odmrPort,
    user: 'acme',
    password: 'acme-secret-123',
    ...(domains ? { domains } : {}),
    session: { hostname: 'customer.test' },
    hooks: store.hooks,
    timeoutMs: 30_000,
  });
  return store.got.map((m) => subjectOf(m.data)).sort();
}

/**
 * collectSubjects at a node that holds mail of a domain homed elsewhere it cannot hand over (home
 * unreachable): each refused transfer pass holds the lane a moment, and an ATRN then gets 451
 * (nothing else to serve); asked again until it gets past one.
 */
export async function collectBetweenPasses(node: TestNode): Promise<string[]> {
  let got: string[] = [];
  await eventually(
    `a collection at ${node.name} between two transfer passes`,
    async () => {
      try {
        got = await collectSubjects(node);
        return true;
      } catch (e) {
        if (/451 4\.3\.0/.test(String(e))) return false;
        throw e;
      }
    },
    30_000,
    500,
  );
  return got;
}
