// Probe: SMTP server sessions in worker threads, the queue on the main thread (issue 16's "if one
// event loop is the limit, put SMTP sessions in worker threads that hand finished messages to the
// queue's single writer"). One process serves SMTP on PORT with logmta's own SMTP engine
// (SmtpListener, its parsers, limits and replies) and makes every message durable in logmta's own
// queue engine (Queue.accept: group commit, fdatasync on) before the 250 goes out.
//
//   node dist/bench/session-threads.js --threads K --port P --dir DIR [--relay SINKPORT] [--hooks-on-main]
//
// --threads 0: the sessions run on the main thread beside the queue, as in `logmta serve`.
// --threads K: K worker threads each accept connections on the same listening socket (its file
// descriptor shared: threads share the process's descriptors, and each thread's event loop polls
// the socket) and run the sessions; a finished message's bytes go to the main thread by
// postMessage (the buffer transferred, not copied), the main thread queues it and answers with the
// queue id only once the message is durable, and only then does the worker send 250.
// Both modes use the same hooks: a recipient check (its domain must be the benchmark's), no other
// policy, no logging, nothing delivered (accept only) — so the difference between them is what moving the sessions costs and
// buys, not policy. With --relay, the main thread also delivers every queued message, through the
// queue's own runner, to a sink on 127.0.0.1:SINKPORT with logmta's SMTP client over kept
// connections (PIPELINING, as the daemon's pool does; no retry ladder, logging or events: a
// deferral stays queued), each outcome committed to the queue. With --hooks-on-main (threads
// only), the MAIL, RCPT and DATA hooks run on the main thread, each a round trip from the session's
// thread, as they would if the daemon kept its policy in one place; without it they run in the
// session's thread. Prints "ready" once listening; exits on SIGTERM, printing "accepted N".
// bench/session-threads.sh drives it with smtp-source and reads CPU per thread from /proc.
import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Queue } from '../src/queue/queue.js';
import type { DeliveryJob } from '../src/queue/types.js';
import { SmtpClient } from '../src/smtp/client/session.js';
import { SmtpListener } from '../src/smtp/server/listener.js';
import type { ReceivedMessage, ServerHooks, SmtpReply } from '../src/smtp/server/hooks.js';

interface Finished {
  n: number;
  sender: string;
  recipients: string[];
  helo: string;
  ip: string;
  data: Uint8Array;
}
/** Deliveries (and so connections) to the sink at once: the daemon's default concurrency_per_destination. */
const RELAY_CONNECTIONS = 20;
type Answer =
  | { n: number; id: string }
  | { n: number; error: string }
  | { n: number; reply: SmtpReply | null };
/** A hook the session's thread asks the main thread to run (--hooks-on-main). */
interface Ask {
  n: number;
  hook: 'mail' | 'rcpt' | 'data';
  arg: string;
}

/** The benchmark's policy: recipients of its one domain only (smtp-source sends rcpt@example.test). */
function policy(hook: Ask['hook'], arg: string): SmtpReply | null {
  if (hook !== 'rcpt') return null;
  return arg.toLowerCase().endsWith('@example.test')
    ? null
    : { code: 554, enhanced: '5.7.1', text: 'Relay access denied' };
}

/** The message's bytes in one buffer of its own (so that it can be transferred). */
async function bytesOf(m: ReceivedMessage): Promise<Uint8Array> {
  const out = Buffer.allocUnsafeSlow(m.size);
  let at = 0;
  for await (const c of m.data.read()) at += c.copy(out, at);
  return out.subarray(0, at);
}

/**
 * The hooks both modes share; `queueIt` makes a message durable and gives its queue id; `ask`,
 * when given, runs the checks elsewhere (the main thread) instead of here.
 */
function hooks(
  queueIt: (f: Finished) => Promise<string>,
  ask?: (hook: Ask['hook'], arg: string) => Promise<SmtpReply | null>,
): ServerHooks {
  let seq = 0;
  const check = ask ?? policy;
  return {
    newMessageId: () => `p${process.pid}.${++seq}`,
    checkSender: (address) => check('mail', address),
    checkRecipient: (address) => check('rcpt', address),
    checkData: () => check('data', ''),
    async accept(m) {
      const data = await bytesOf(m);
      const id = await queueIt({
        n: 0,
        sender: m.sender,
        recipients: m.recipients.map((r) => r.address),
        helo: m.client.helo ?? '',
        ip: m.client.ip,
        data,
      });
      return { queueId: id };
    },
  };
}

function listenerFor(h: ServerHooks): SmtpListener {
  return new SmtpListener({ hostname: 'probe.test', maxConnections: 4000, maxPerIp: 4000 }, h);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      threads: { type: 'string', default: '0' },
      port: { type: 'string' },
      dir: { type: 'string' },
      relay: { type: 'string' },
      'hooks-on-main': { type: 'boolean', default: false },
    },
  });
  const hooksOnMain = values['hooks-on-main'] === true;
  const threads = Number(values.threads);
  const port = Number(values.port);
  if (!Number.isInteger(threads) || threads < 0 || !values.dir || !Number.isInteger(port)) {
    console.error('usage: session-threads --threads K --port P --dir DIR');
    process.exit(64);
  }
  // At most RELAY_CONNECTIONS deliveries at once, each on a connection of its own.
  const q = await Queue.open({ dir: values.dir, sync: true, maxInflight: RELAY_CONNECTIONS });
  if (values.relay !== undefined) relay(q, Number(values.relay));
  let accepted = 0;
  const queueIt = async (f: Finished): Promise<string> => {
    const r = await q.accept({
      data: [Buffer.from(f.data.buffer, f.data.byteOffset, f.data.byteLength)],
      sender: f.sender,
      recipients: f.recipients.map((address) => ({ address })),
      client: { helo: f.helo, addr: f.ip },
    });
    accepted++;
    return r.id;
  };
  const stop = async (): Promise<void> => {
    await q.stop();
    console.log(`accepted ${accepted}`);
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());

  if (threads === 0) {
    const l = listenerFor(hooks(queueIt));
    await l.listen(port, '127.0.0.1');
    console.log('ready');
    return;
  }
  // The first worker binds the port and tells its descriptor; the others listen on that same
  // descriptor. The main thread never polls the socket, so it takes no connection itself.
  const serve = (w: Worker): Promise<number> =>
    new Promise<number>((res, rej) => {
      w.once('error', rej);
      w.on('message', (m: Finished | Ask | { ready: number }) => {
        if ('ready' in m) return res(m.ready);
        if ('hook' in m) return w.postMessage({ n: m.n, reply: policy(m.hook, m.arg) } satisfies Answer);
        queueIt(m).then(
          (id) => w.postMessage({ n: m.n, id } satisfies Answer),
          (e: Error) => w.postMessage({ n: m.n, error: (e as Error).message } satisfies Answer),
        );
      });
    });
  const first = new Worker(new URL(import.meta.url), { workerData: { port, hooksOnMain } });
  const fd = await serve(first);
  await Promise.all(
    Array.from({ length: threads - 1 }, () =>
      serve(new Worker(new URL(import.meta.url), { workerData: { fd, hooksOnMain } })),
    ),
  );
  console.log('ready');
}

/** Delivers every job to the sink on 127.0.0.1:`sinkPort` over kept connections. */
function relay(q: Queue, sinkPort: number): void {
  const idle: SmtpClient[] = [];
  q.setDeliverer(async (job: DeliveryJob) => {
    const info = job.envelope.info;
    const tx = {
      sender: info.sender,
      recipients: job.pending.map((i) => ({ address: info.recipients[i]!.address })),
      size: info.size,
      data: await job.data(),
    };
    let c = idle.pop() ?? (await SmtpClient.connect('127.0.0.1', sinkPort, { name: 'probe.test' }));
    let r = await c.sendMessage(tx);
    if (r.stale) {
      // A kept connection the sink had closed (the driver starts a new sink per run): nothing
      // was sent, so a new connection carries the message at once, as the daemon's pool does.
      c.close();
      c = await SmtpClient.connect('127.0.0.1', sinkPort, { name: 'probe.test' });
      r = await c.sendMessage(tx);
    }
    if (r.reusable) idle.push(c);
    else c.close();
    await job.finish(
      r.recipients.map((x) => ({
        rcpt: job.pending[x.index]!,
        status: x.status,
        code: x.code,
        enhanced: x.enhanced,
        text: x.text,
        host: '127.0.0.1',
      })),
    );
  });
  q.start();
}

async function worker(): Promise<void> {
  const port = parentPort!;
  const wd = workerData as { fd?: number; port?: number; hooksOnMain: boolean };
  const waiting = new Map<number, { res: (v: never) => void; rej: (e: Error) => void }>();
  let n = 0;
  port.on('message', (a: Answer) => {
    const w = waiting.get(a.n);
    waiting.delete(a.n);
    if ('id' in a) w?.res(a.id as never);
    else if ('reply' in a) w?.res(a.reply as never);
    else w?.rej(new Error(a.error));
  });
  const ask = (hook: Ask['hook'], arg: string): Promise<SmtpReply | null> =>
    new Promise((res, rej) => {
      const m: Ask = { n: ++n, hook, arg };
      waiting.set(m.n, { res, rej });
      port.postMessage(m);
    });
  const l = listenerFor(
    hooks(
      (f) =>
        new Promise<string>((res, rej) => {
          f.n = ++n;
          waiting.set(f.n, { res, rej });
          port.postMessage(f, [f.data.buffer as ArrayBuffer]);
        }),
      wd.hooksOnMain ? ask : undefined,
    ),
  );
  await new Promise<void>((res, rej) => {
    l.server.once('error', rej);
    if (wd.fd !== undefined) l.server.listen({ fd: wd.fd }, () => res());
    else l.server.listen({ port: wd.port, host: '127.0.0.1', backlog: 1024 }, () => res());
  });
  const fd = (l.server as unknown as { _handle: { fd: number } })._handle.fd;
  port.postMessage({ ready: fd });
}

if (isMainThread) await main();
else await worker();
