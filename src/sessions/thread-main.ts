// The SMTP session thread: a worker thread that binds the SMTP listeners (smtp.listen,
// smtp.submission, smtp.submissions) and runs their sessions with the same intake as the main
// thread would (sessions/intake.ts), so the main thread's event loop is left to the queue and
// delivery. What must stay one for the process is reached through doors: the queue (a message
// is made durable by the main thread, and only its answer lets the session send 250), the
// resolver (one cache), ETRN (the flush runs beside the queue), the log and the counters. Message
// ids and the memory budget are shared cells (queue/ids.ts, queue/data/budget.ts), so they are
// read and counted here without asking.
// Data: a message is kept here as it arrives (counted in the shared budget; over it, MAIL gets
// 452 as on the main thread) and crosses to the main thread in one transferred buffer at the end
// of data; past a chunk it streams into a spool of the main thread's (thread-sink.ts).
// Fails: a start that cannot bind posts `failed` with the listen error; the thread then exits.
import { parentPort, workerData } from 'node:worker_threads';
import { clientFacts } from '../admin/events.js';
import { Router } from '../delivery/router.js';
import type { DnsResolver } from '../dns/types.js';
import { MtaError } from '../errors.js';
import type { Logger, LogFields } from '../log.js';
import type { HookQueue } from '../policy/hooks.js';
import { formatId, IdSource, MemoryBudget } from '../queue/index.js';
import type { ServerHooks, SessionContext } from '../smtp/server/hooks.js';
import type { SmtpListener } from '../smtp/server/listener.js';
import { systemClock } from '../util/clock.js';
import { ListenSockets } from '../util/listen-sockets.js';
import { buildIntake, buildListeners } from './intake.js';
import { oneBuffer, type SpoolDoor, ThreadSink } from './thread-sink.js';
import {
  type ErrorWire,
  errorWire,
  type FromThread,
  type ThreadData,
  type ToThread,
} from './thread-protocol.js';

const port = parentPort!;
/**
 * What this thread runs with: the start's, replaced by each restart in place (a reload). A thread
 * spawned ahead of need (SessionThreadSlot.prewarm) has none until its first start message.
 */
let wd = workerData as ThreadData;
/** The listening sockets, kept across restarts in place so that a reload never closes a port. */
const sockets = new ListenSockets((e, key) =>
  new ForwardLogger().error({ socket: key, err: e.message }, 'listening socket error'),
);
const refusalLine = (): string => `421 4.3.2 ${wd.config.hostname} Service shutting down\r\n`;

const waiting = new Map<number, { res: (v: unknown) => void; rej: (e: Error) => void }>();
let seq = 0;
function ask<T>(m: FromThread & { n: number }, transfer?: ArrayBuffer[]): Promise<T> {
  return new Promise<T>((res, rej) => {
    waiting.set(m.n, { res: res as (v: unknown) => void, rej });
    port.postMessage(m, transfer);
  });
}
const post = (m: FromThread): void => port.postMessage(m);

function fromWire(w: ErrorWire): Error {
  if (w.smtp || w.kind)
    return new MtaError(
      w.code ?? 'SESSION_THREAD',
      w.kind ?? 'transient',
      w.message,
      w.smtp ? { smtp: w.smtp } : {},
    );
  return Object.assign(new Error(w.message), w.code ? { code: w.code } : {});
}

/** The thread's logger: its lines are written by the main thread's (one destination, one order). */
class ForwardLogger implements Logger {
  constructor(private readonly bindings: LogFields = {}) {}
  private line(level: 'error' | 'warn' | 'info' | 'debug', fields: LogFields, msg: string): void {
    if (!wd.levels.includes(level)) return;
    const all = { ...this.bindings, ...fields };
    try {
      post({ t: 'log', level, fields: all, msg });
    } catch {
      // A field that cannot be cloned (a socket, a function): its text instead.
      post({
        t: 'log',
        level,
        fields: JSON.parse(JSON.stringify(all, (_k, v) => (v instanceof Error ? v.message : v))),
        msg,
      });
    }
  }
  error(f: LogFields, m: string): void {
    this.line('error', f, m);
  }
  warn(f: LogFields, m: string): void {
    this.line('warn', f, m);
  }
  info(f: LogFields, m: string): void {
    this.line('info', f, m);
  }
  debug(f: LogFields, m: string): void {
    this.line('debug', f, m);
  }
  child(b: LogFields): Logger {
    return new ForwardLogger({ ...this.bindings, ...b });
  }
  isLevelEnabled(level: string): boolean {
    return wd.levels.includes(level);
  }
  flush(): void {}
}

/** Every lookup goes to the main thread's resolver (one cache, one DNSSEC view). */
const resolver = new Proxy({} as DnsResolver, {
  get(_t, method: string) {
    if (method === 'then') return undefined;
    return (...args: unknown[]) => ask({ t: 'dns', n: ++seq, method, args });
  },
});

// Made by each start, from its data.
let budget!: MemoryBudget;
let ids!: IdSource;
let refusal: MtaError | undefined;

/** The main thread's spools of streamed messages (thread-spools.ts), through the port. */
const door: SpoolDoor = {
  get budget() {
    return budget;
  },
  chunk: (msgId, data) => ask({ t: 'chunk', n: ++seq, msgId, data }, [data.buffer as ArrayBuffer]),
  read: (msgId, reader) => ask({ t: 'read', n: ++seq, msgId, reader }),
  drop: (msgId) => post({ t: 'drop', msgId }),
};

/** Client facts of messages being accepted, by message id (for the `received` event). */
const facts = new Map<string, { sender: string; client: ReturnType<typeof clientFacts> }>();

const queue: HookQueue = {
  get budget() {
    return budget;
  },
  refusal: () => refusal,
  spool: (msgId) => new ThreadSink(door, msgId),
  isSpool: (d) => d instanceof ThreadSink,
  async accept(input) {
    const { data: raw, ...rest } = input;
    const { data, spooled } =
      raw instanceof ThreadSink
        ? await raw.take()
        : { data: oneBuffer(raw as readonly Buffer[]), spooled: false };
    const id = input.msgId !== undefined ? formatId(input.msgId) : undefined;
    const f = id !== undefined ? facts.get(id) : undefined;
    const m: FromThread & { n: number } = {
      t: 'accept',
      n: ++seq,
      input: rest,
      data,
      ...(spooled && raw instanceof ThreadSink ? { spool: raw.msgId } : {}),
      ...(f && id !== undefined ? { facts: { id, ...f } } : {}),
    };
    return ask<{ id: string }>(m, [data.buffer as ArrayBuffer]);
  },
};

function contextFacts(ctx: SessionContext) {
  return {
    client: { ...ctx.client },
    localAddress: ctx.localAddress,
    localPort: ctx.localPort,
    loopback: ctx.loopback,
    submission: ctx.submission,
  };
}

let listeners: SmtpListener[] = [];

async function start(): Promise<void> {
  const config = wd.config;
  budget = new MemoryBudget(wd.budgetLimit, wd.budget);
  ids = new IdSource(() => Date.now(), wd.ids);
  refusal = undefined;
  const log = new ForwardLogger();
  const router = new Router(config, resolver, Math.random, 25, () => false);
  const intake = await buildIntake({
    config,
    router,
    queue,
    ids,
    resolver,
    clock: systemClock,
    log,
    counts: {
      authResult: (method, result) => post({ t: 'count', what: 'authResult', args: [method, result] }),
      dnsblListed: (zone) => post({ t: 'count', what: 'dnsblListed', args: [zone] }),
      dkimSigned: (alg) => post({ t: 'count', what: 'dkimSigned', args: [alg] }),
    },
  });
  const accept = intake.smtp.accept.bind(intake.smtp);
  const hooks: ServerHooks = {
    ...intake.smtp,
    async accept(m, ctx) {
      facts.set(m.id, { sender: m.sender, client: clientFacts(m) });
      try {
        return await accept(m, ctx);
      } finally {
        facts.delete(m.id);
      }
    },
    ...(wd.etrn
      ? {
          etrn: (node: string, ctx: SessionContext) =>
            ask({ t: 'etrn', n: ++seq, node, ctx: contextFacts(ctx) }),
        }
      : {}),
  };
  const started: SmtpListener[] = [];
  try {
    const bound = await buildListeners({
      config,
      hooks,
      clock: systemClock,
      log,
      listenSockets: sockets,
      started: (l) => started.push(l),
    });
    listeners = bound.map((b) => b.listener);
    accepted = 0;
    for (const l of listeners) l.server.on('connection', () => accepted++);
    let shown = { open: -1, accepted: -1 };
    clearInterval(statsTimer);
    statsTimer = setInterval(() => {
      let open = 0;
      for (const l of listeners) open += l.connections.size;
      if (open === shown.open && accepted === shown.accepted) return;
      shown = { open, accepted };
      post({ t: 'stats', open, accepted });
    }, 500).unref();
    post({ t: 'ready', bound: bound.map((b) => ({ role: b.role, address: b.address, port: b.port })) });
  } catch (e) {
    await Promise.all(started.map((l) => l.stop(0)));
    post({ t: 'failed', error: errorWire(e) });
  } finally {
    // A port the configuration no longer names (or that a failed start opened) is closed.
    sockets.closeUnattached(refusalLine());
  }
}
let accepted = 0;
let statsTimer: NodeJS.Timeout | undefined;

port.on('message', (m: ToThread) => {
  if (m.t === 'answer') {
    const w = waiting.get(m.n);
    waiting.delete(m.n);
    if (m.error) w?.rej(fromWire(m.error));
    else w?.res(m.value);
  } else if (m.t === 'refusal') {
    refusal = m.smtp
      ? new MtaError(m.code ?? 'QUEUE_REFUSING', 'transient', m.message ?? 'refusing mail', { smtp: m.smtp })
      : undefined;
  } else if (m.t === 'stop') {
    // Kept: the listeners stop, their sockets stay bound (new connections wait, parked) for
    // the restart in place that follows; otherwise they close and the thread ends.
    if (!m.keep) sockets.closeAll(refusalLine());
    const l = listeners;
    listeners = [];
    void Promise.all(l.map((x) => x.stop(m.graceMs))).then(() => {
      post({ t: 'stopped' });
      if (!m.keep) port.close();
    });
  } else if (m.t === 'start') {
    wd = m.data;
    void start();
  }
});

if (workerData !== null) await start();
