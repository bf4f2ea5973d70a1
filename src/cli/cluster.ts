// `logmta cluster status|home|drain`: the operator's view of and hands on a logmta cluster.
// status and home talk to the cluster's Redis directly (from [cluster] of the configuration), so
// they work from any node and while a node is down; drain asks this node's running daemon over
// its control socket, since the daemon moves the mail.
// Exit codes: 0 done; 1 refused (unknown node, not a cluster domain, a drain that cannot
// start); 64 usage; 69 Redis or the daemon unreachable; 78 bad configuration or no [cluster].

import { parseArgs } from 'node:util';
import { type DrainStatus, Keys, readNodes, RedisLink, type NodeView } from '../cluster/index.js';
import { type Config, parseDomain } from '../config/index.js';
import { nullLogger } from '../log.js';
import { DAEMON_OPTIONS, describeError, exitCodeFor, findDaemon, withDaemon } from './client.js';
import type { Io } from './main.js';

const USAGE = `usage: logmta cluster <command> [--config FILE | --data-dir DIR]
  status [--json]            every node (alive or not) with its queue and held mail; domain homes
  home DOMAIN [NODE] [--force]
                             show a domain's home, or move it to NODE (its held mail follows)
  drain [--stop] [--status] [--wait SECONDS] [--socket PATH]
                             move this node's whole queue to the others (held lanes to their
                             homes, other mail spread over the live nodes); --stop interrupts it
`;

class UsageError extends Error {}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      ...DAEMON_OPTIONS,
      json: { type: 'boolean' },
      force: { type: 'boolean' },
      stop: { type: 'boolean' },
      status: { type: 'boolean' },
      wait: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
}

/** Domains the configuration holds for customers: ETRN domains and ODMR accounts' domains. */
function heldDomains(config: Config): string[] {
  return [...config.etrn.map((e) => e.domain), ...config.odmr.accounts.flatMap((a) => a.domains)];
}

async function connect(config: Config): Promise<{ link: RedisLink; keys: Keys }> {
  const c = config.cluster;
  if (!c) throw new UsageError('the configuration has no [cluster] section');
  const link = new RedisLink(c, nullLogger);
  // An operator's command may wait longer for Redis than a daemon does (a loaded machine).
  await link.start(Math.max(c.redisTimeoutMs, 5_000));
  if (!link.up) {
    await link.close();
    const e = new Error('the cluster Redis is not reachable') as Error & { exit: number };
    e.exit = 69;
    throw e;
  }
  return { link, keys: new Keys(c.prefix) };
}

function ago(ms: number): string {
  if (ms < 0) return 'now';
  if (ms < 120_000) return `${Math.round(ms / 1000)}s ago`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m ago`;
  return `${Math.round(ms / 3_600_000)}h ago`;
}

export interface ClusterStatus {
  nodes: NodeView[];
  homes: Record<string, string>;
}

export function formatStatus(s: ClusterStatus, now: number): string {
  const rows = [['NODE', 'STATE', 'SMTP', 'ODMR', 'VERSION', 'QUEUED', 'HELD', 'LAST SEEN']];
  for (const n of s.nodes) {
    const held = Object.values(n.held).reduce((a, b) => a + b, 0);
    rows.push([
      n.node,
      n.alive ? (n.draining ? 'draining' : 'alive') : 'dead',
      n.smtp,
      n.odmr ?? '-',
      n.version,
      String(n.queue.messages),
      String(held),
      ago(now - n.at),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  let out = `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
  const domains = Object.keys(s.homes).sort();
  if (domains.length > 0) {
    out += '\nDOMAIN HOMES (held pieces per node)\n';
    for (const d of domains) {
      const per = s.nodes
        .filter((n) => (n.held[d] ?? 0) > 0)
        .map((n) => `${n.node}=${n.held[d]}`)
        .join(' ');
      out += `  ${d} -> ${s.homes[d]}${per ? `  (${per})` : ''}\n`;
    }
  }
  return out;
}

async function status(config: Config, io: Io, json: boolean): Promise<number> {
  const { link, keys } = await connect(config);
  try {
    const nodes = await readNodes(link, keys);
    const homes = await link.run((r) => r.hgetall(keys.homes));
    if (nodes === undefined || homes === undefined) throw new Error('the cluster Redis did not answer');
    const s: ClusterStatus = { nodes: [...nodes.values()], homes };
    io.stdout.write(json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s, Date.now()));
    return 0;
  } finally {
    await link.close();
  }
}

async function home(config: Config, io: Io, positionals: string[], force: boolean): Promise<number> {
  const [domainArg, node] = positionals;
  if (domainArg === undefined || positionals.length > 2) throw new UsageError('home takes DOMAIN [NODE]');
  let domain: string;
  try {
    domain = parseDomain(domainArg);
  } catch {
    throw new UsageError(`not a domain: ${JSON.stringify(domainArg)}`);
  }
  const { link, keys } = await connect(config);
  try {
    if (node === undefined) {
      const h = await link.run((r) => r.hget(keys.homes, domain));
      io.stdout.write(`${domain} -> ${h ?? '(no home yet: chosen when first seen)'}\n`);
      return 0;
    }
    if (!heldDomains(config).includes(domain) && !force) {
      io.stderr.write(
        `logmta cluster: ${domain} is no ETRN or ODMR domain of this configuration (--force to set it anyway)\n`,
      );
      return 1;
    }
    const nodes = await readNodes(link, keys);
    if (!nodes?.has(node) && !force) {
      io.stderr.write(
        `logmta cluster: no node named ${JSON.stringify(node)} has joined the cluster (--force to set it anyway)\n`,
      );
      return 1;
    }
    const notice = JSON.stringify({ type: 'home', domain, node, from: 'cli' });
    const ok = await link.run(
      (r) => r.multi().hset(keys.homes, domain, node).publish(keys.events, notice).exec(),
      2,
    );
    if (ok === undefined) throw new Error('the cluster Redis did not answer');
    io.stdout.write(`${domain} -> ${node}\n`);
    return 0;
  } finally {
    await link.close();
  }
}

function formatDrain(s: DrainStatus): string {
  if (!s.draining) return `not draining; ${s.queued} message(s) queued\n`;
  const peers = s.peers.length > 0 ? s.peers.join(', ') : 'none alive';
  const hold = s.hold > 0 ? `; ${s.hold} held by the operator (not moved: release or delete them)` : '';
  return `draining to ${peers}: ${s.queued} message(s) left${hold}\n`;
}

async function drain(argv: ReturnType<typeof parse>, io: Io): Promise<number> {
  const v = argv.values;
  if (argv.positionals.length > 0) throw new UsageError('drain takes no arguments');
  const waitS = v.wait === undefined ? 0 : Number(v.wait);
  if (!Number.isFinite(waitS) || waitS < 0) throw new UsageError('--wait: a number of seconds');
  const target = findDaemon(v);
  if (!target.config.cluster) throw new UsageError('the configuration has no [cluster] section');
  const op = v.status ? 'cluster.drain.status' : 'cluster.drain';
  let s = await withDaemon(target, (c) =>
    c.request<DrainStatus>(op, v.status ? {} : { on: v.stop !== true }),
  );
  const end = Date.now() + waitS * 1000;
  while (s.draining && s.queued - s.hold > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 500));
    s = await withDaemon(target, (c) => c.request<DrainStatus>('cluster.drain.status'));
  }
  io.stdout.write(formatDrain(s));
  if (waitS > 0 && s.draining && s.queued - s.hold > 0) return 75;
  return 0;
}

export async function run(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  let args: ReturnType<typeof parse>;
  try {
    args = parse(rest);
  } catch (e) {
    io.stderr.write(`logmta cluster: ${describeError(e)}\n${USAGE}`);
    return 64;
  }
  if (args.values.help || cmd === 'help' || cmd === undefined) {
    (cmd === undefined ? io.stderr : io.stdout).write(USAGE);
    return cmd === undefined ? 64 : 0;
  }
  try {
    switch (cmd) {
      case 'status':
        if (args.positionals.length > 0) throw new UsageError('status takes no arguments');
        return await status(findDaemon(args.values).config, io, args.values.json === true);
      case 'home':
        return await home(findDaemon(args.values).config, io, args.positionals, args.values.force === true);
      case 'drain':
        return await drain(args, io);
      default:
        throw new UsageError(`unknown cluster command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`logmta cluster: ${e.message}\n${USAGE}`);
      return e.message.includes('[cluster]') ? 78 : 64;
    }
    io.stderr.write(`logmta cluster: ${describeError(e)}\n`);
    const exit = (e as { exit?: number }).exit;
    return exit ?? exitCodeFor(e);
  }
}
