// `logmta queue ...`: the operator's view of and hands on the running daemon's queue, over the
// control socket (client.ts). list (mailq), show, summary (qshape) read; flush, hold, release,
// delete and bounce act — by id, or by filter after showing the count and asking (or --yes).
// Every action is done by the daemon as records in the log (crash-safe, in the history).
// Exit codes: 0 done; 1 an id was not queued / nothing matched an action / the daemon refused;
// 64 usage; 69 no daemon; 75 some message was being delivered and was left alone (try again);
// 77 socket not ours; 78 bad configuration.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { MessageView, Summary } from '../queue/index.js';
import type { ActionResult } from '../admin/ops.js';
import { parseDuration } from '../config/index.js';
import { DAEMON_OPTIONS, describeError, exitCodeFor, findDaemon, withDaemon } from './client.js';
import type { Io } from './main.js';
import { formatList, formatShow, formatSummary } from './queue-format.js';

const USAGE = `usage: logmta queue <command> [--config FILE | --data-dir DIR] [--socket PATH]
  list    [--lane L] [--domain D] [--sender S] [--older-than 1h] [--json]
  show    ID [--data] [--json]
  summary [--lane L] [--domain D] [--sender S] [--older-than 1h] [--json]
  flush   [--domain D] [ID...]
  hold | release | delete | bounce  ID... | (--all | filter options) [--yes]
`;

const ACTIONS = ['hold', 'release', 'delete', 'bounce'] as const;
type Action = (typeof ACTIONS)[number];
const PAST: Record<Action | 'flush', string> = {
  hold: 'held',
  release: 'released',
  delete: 'deleted',
  bounce: 'bounced',
  flush: 'flushed',
};

/** What an action found when a queued message needed nothing from it. */
const UNCHANGED: Record<Action | 'flush', string> = {
  hold: 'already held',
  release: 'not held: nothing to release',
  delete: 'nothing to delete',
  bounce: 'nothing to bounce',
  flush: 'not deferred: nothing to flush',
};

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      ...DAEMON_OPTIONS,
      lane: { type: 'string' },
      domain: { type: 'string' },
      sender: { type: 'string' },
      'older-than': { type: 'string' },
      json: { type: 'boolean' },
      data: { type: 'boolean' },
      yes: { type: 'boolean', short: 'y' },
      all: { type: 'boolean' },
      limit: { type: 'string' },
    },
    allowPositionals: true,
  });
}

class UsageError extends Error {}

function filterArgs(v: ReturnType<typeof parse>['values']): Record<string, unknown> {
  const a: Record<string, unknown> = {};
  if (v.lane !== undefined) a.lane = v.lane;
  if (v.domain !== undefined) a.domain = v.domain;
  if (v.sender !== undefined) a.sender = v.sender;
  if (v['older-than'] !== undefined) {
    try {
      a.olderThanMs = parseDuration(v['older-than']);
    } catch {
      throw new UsageError(`--older-than: not a duration: ${v['older-than']} (e.g. 30m, 1h, 2d)`);
    }
  }
  if (v.limit !== undefined) {
    const n = Number(v.limit);
    if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError('--limit: a positive integer');
    a.limit = n;
  }
  return a;
}

/** Asks on the terminal (or reads one line of stdin); anything but y/yes is no. */
async function confirm(io: Io, question: string): Promise<boolean> {
  const input = io.stdin ?? process.stdin;
  io.stderr.write(`${question} [y/N] `);
  const rl = createInterface({ input, terminal: false });
  const answer = await new Promise<string>((resolve) => {
    rl.once('line', resolve);
    rl.once('close', () => resolve(''));
  });
  rl.close();
  return /^\s*y(es)?\s*$/i.test(answer);
}

function printActions(io: Io, verb: Action | 'flush', r: ActionResult): void {
  for (const d of r.done)
    io.stdout.write(`${d.id}: ${PAST[verb]} (${d.pieces} envelope${d.pieces === 1 ? '' : 's'})\n`);
  for (const id of r.missing) io.stderr.write(`${id}: not in the queue\n`);
  for (const id of r.unchanged ?? []) io.stderr.write(`${id}: ${UNCHANGED[verb]}\n`);
  for (const b of r.busy ?? [])
    io.stderr.write(
      `${b.id}: not ${PAST[verb]}: ${b.pieces} envelope${b.pieces === 1 ? ' is' : 's are'} being delivered right now; try again\n`,
    );
}

export async function run(argv: string[], io: Io): Promise<number> {
  const [cmd, ...rest] = argv;
  let args: ReturnType<typeof parse>;
  try {
    args = parse(rest);
  } catch (e) {
    io.stderr.write(`logmta queue: ${describeError(e)}\n${USAGE}`);
    return 64;
  }
  const v = args.values;
  const ids = args.positionals;
  try {
    const target = findDaemon(v);
    switch (cmd) {
      case 'list': {
        if (ids.length > 0) throw new UsageError('list takes no ids (use show ID)');
        const r = await withDaemon(target, (c) =>
          c.request<{ now: number; messages: MessageView[] }>('list', filterArgs(v)),
        );
        io.stdout.write(v.json ? `${JSON.stringify(r.messages, null, 2)}\n` : formatList(r.messages, r.now));
        return 0;
      }
      case 'show': {
        if (ids.length !== 1) throw new UsageError('show takes exactly one id');
        const m = await withDaemon(target, (c) =>
          c.request<MessageView & { data?: string }>('show', { id: ids[0], data: v.data === true }),
        );
        if (v.json) {
          io.stdout.write(`${JSON.stringify(m, null, 2)}\n`);
          return 0;
        }
        io.stdout.write(formatShow(m, Date.now()));
        if (m.data !== undefined) {
          io.stdout.write('\n--- message data ---\n');
          io.stdout.write(Buffer.from(m.data, 'base64'));
        }
        return 0;
      }
      case 'summary': {
        if (ids.length > 0) throw new UsageError('summary takes no ids');
        const s = await withDaemon(target, (c) =>
          c.request<Summary & { now: number }>('summary', filterArgs(v)),
        );
        io.stdout.write(v.json ? `${JSON.stringify(s, null, 2)}\n` : formatSummary(s));
        return 0;
      }
      case 'flush': {
        const a: Record<string, unknown> = { ids };
        if (v.domain !== undefined) a.domain = v.domain;
        const r = await withDaemon(target, (c) =>
          c.request<ActionResult & { retry: number; held: number; waiting?: number }>('flush', a),
        );
        if (ids.length > 0) {
          printActions(io, 'flush', r);
          return r.missing.length > 0 ? 1 : r.busy.length > 0 ? 75 : 0;
        }
        io.stdout.write(
          v.domain !== undefined
            ? (r.waiting ?? 0) > 0
              ? `flushing ${v.domain}: ${r.retry} deferred message(s) moved to an immediate attempt; ${v.domain}: ${r.waiting} held envelope(s) wait for the customer's ATRN (an ODMR domain: nothing else can deliver them)\n`
              : `flushing ${v.domain}: ${r.retry} deferred message(s) moved to an immediate attempt, ${r.held} held envelope(s) being delivered\n`
            : `flushing the retry queue: ${r.retry} envelope(s) attempted now\n`,
        );

        return 0;
      }
      case 'hold':
      case 'release':
      case 'delete':
      case 'bounce':
        return await act(cmd, ids, v, target, io);
      case undefined:
      case 'help':
        io.stdout.write(USAGE);
        return cmd === undefined ? 64 : 0;
      default:
        throw new UsageError(`unknown queue command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`logmta queue: ${e.message}\n${USAGE}`);
      return 64;
    }
    io.stderr.write(`logmta queue: ${describeError(e)}\n`);
    return exitCodeFor(e);
  }
}

async function act(
  verb: Action,
  ids: string[],
  v: ReturnType<typeof parse>['values'],
  target: ReturnType<typeof findDaemon>,
  io: Io,
): Promise<number> {
  const filter = filterArgs(v);
  const byFilter = Object.keys(filter).length > 0 || v.all === true;
  if (ids.length > 0 && byFilter) throw new UsageError(`${verb}: give ids or a filter, not both`);
  if (ids.length === 0 && !byFilter)
    throw new UsageError(`${verb}: give ids, a filter (--lane/--domain/--sender/--older-than) or --all`);
  return withDaemon(target, async (c) => {
    let chosen = ids;
    if (byFilter) {
      chosen = (await c.request<{ ids: string[] }>('match', filter)).ids;
      if (chosen.length === 0) {
        io.stderr.write(`${verb}: no message matches\n`);
        return 1;
      }
      const ok =
        v.yes === true ||
        (await confirm(io, `${verb} ${chosen.length} message${chosen.length === 1 ? '' : 's'}?`));
      if (!ok) {
        io.stderr.write('nothing done\n');
        return 1;
      }
    }
    const r = await c.request<ActionResult>(verb, { ids: chosen });
    printActions(io, verb, r);
    if (r.missing.length > 0 && !byFilter) return 1;
    return r.busy.length > 0 ? 75 : 0;
  });
}
