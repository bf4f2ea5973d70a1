// Traffic for the scenarios that reload, stop or restart `logmta serve` while clients send: real
// client programs kept busy in loops — Python's smtplib (test/support/traffic.py: STARTTLS, AUTH,
// a few messages per session, its own Message-ID on each), swaks and Postfix's smtp-source — and
// the ledger that says what became of every message: which ones a client got 250 for, which
// replies that were not 2xx it saw, and how many copies of each Message-ID reached the Maildirs
// and the sinks. The clients retry after anything (a refused connect, a 4xx, a dropped line), as
// MTAs do.
// Invariant: every client a test starts is stopped by `Traffic.stop()` (children killed if they
// do not end by themselves).
// Fails: `stop()` rejects naming a client that did not end within its timeout.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT, runTool, type SpawnedDaemon, toolPath } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { sleep, waitFor } from '../support/wait.js';
import { reservePort, type Stage, type StageOptions } from './kit.js';

/** What one client saw for one message or session step (the JSON lines of traffic.py). */
export interface TrafficEvent {
  ev: 'acked' | 'unknown' | 'refused' | 'error' | 'end' | 'paused' | 'resumed';
  /** The client that saw it. */
  client: string;
  id?: string;
  code?: number;
  text?: string;
  stage?: string;
  err?: string;
  t: number;
}

interface Client {
  name: string;
  /** Between sessions, with no connection open, while the traffic is paused. */
  idle(): boolean;
  events(): TrafficEvent[];
  /** Resolves once the client has ended (after its current session). */
  ended: Promise<void>;
  kill(): void;
}

/** Message-ID of a message's text (first header of that name), or undefined. */
export function messageIdOf(text: string): string | undefined {
  const head = text.split(/\r?\n\r?\n/, 1)[0] ?? '';
  return /^message-id:\s*(<[^>\r\n]*>)/im.exec(head)?.[1];
}

/**
 * Counts the daemon's log lines by message as they are written (a long run's stdout outgrows
 * what SpawnedDaemon keeps, so counting the kept text would go back).
 */
export function logCounter(d: SpawnedDaemon): (msg: string | RegExp) => number {
  const counts = new Map<string, number>();
  let rest = '';
  d.child.stdout?.on('data', (chunk: string | Buffer) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const l of lines) {
      const m = /"msg":"((?:[^"\\]|\\.)*)"/.exec(l)?.[1];
      if (m !== undefined) counts.set(m, (counts.get(m) ?? 0) + 1);
    }
  });
  return (msg) => {
    if (typeof msg === 'string') return counts.get(msg) ?? 0;
    let n = 0;
    for (const [k, v] of counts) if (msg.test(k)) n += v;
    return n;
  };
}

/** A group of looping clients sharing a stop and a pause switch (files in `dir`). */
export class Traffic {
  private readonly clients: Client[] = [];
  private readonly stopFile: string;
  private readonly pauseFile: string;
  private stopping = false;

  constructor(private readonly dir: string) {
    this.stopFile = join(dir, 'traffic.stop');
    this.pauseFile = join(dir, 'traffic.pause');
    rmSync(this.stopFile, { force: true });
    rmSync(this.pauseFile, { force: true });
  }

  /**
   * Python smtplib: sessions of `perSession` messages from `from` to `to`, over STARTTLS and
   * AUTH when asked. Message-IDs are `<NAME-N@traffic.test>`.
   */
  python(
    name: string,
    port: number,
    o: {
      from: string;
      to: string[];
      starttls?: boolean;
      user?: string;
      password?: string;
      perSession?: number;
    },
  ): void {
    const out = join(this.dir, `traffic-${name}.jsonl`);
    writeFileSync(out, '');
    const args = [
      join(REPO_ROOT, 'test', 'support', 'traffic.py'),
      String(port),
      name,
      out,
      this.stopFile,
      this.pauseFile,
      o.from,
      o.to.join(','),
      ...(o.starttls ? ['--starttls'] : []),
      ...(o.user ? ['--user', o.user, '--password', o.password ?? ''] : []),
      '--per-session',
      String(o.perSession ?? 3),
    ];
    const child = spawn(toolPath('python3') ?? 'python3', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const ended = new Promise<void>((res) => child.once('exit', () => res()));
    // Whole lines only: the last one may be half written as it is read.
    const events = (): TrafficEvent[] =>
      readFileSync(out, 'utf8')
        .split('\n')
        .slice(0, -1)
        .filter((l) => l.startsWith('{'))
        .map((l) => ({ ...(JSON.parse(l) as TrafficEvent), client: name }));
    this.add({
      name,
      idle: () =>
        events()
          .filter((e) => e.ev === 'paused' || e.ev === 'resumed')
          .at(-1)?.ev === 'paused',
      events: () => {
        if (stderr !== '') return [...events(), { ev: 'error', client: name, err: stderr, t: Date.now() }];
        return events();
      },
      ended,
      kill: () => kill(child),
    });
  }

  /**
   * swaks, one message per run (a new connection each), with STARTTLS when `tls`; Message-IDs
   * `<NAME-N@traffic.test>`. A run's transcript says what the message got: the reply after the
   * lone dot, or none (the line went).
   */
  swaks(name: string, port: number, o: { from: string; to: string; tls?: boolean }): void {
    let n = 0;
    this.loop(name, async () => {
      n++;
      const id = `<${name}-${n}@traffic.test>`;
      const r = await runTool(
        toolPath('swaks') ?? 'swaks',
        [
          '--server',
          `127.0.0.1:${port}`,
          '--helo',
          'traffic.test',
          '--from',
          o.from,
          '--to',
          o.to,
          '--header',
          `Message-Id: ${id}`,
          '--header',
          `Subject: ${name} ${n}`,
          '--timeout',
          '30',
          ...(o.tls ? ['--tls'] : []),
        ],
        { timeoutMs: 60_000 },
      );
      return swaksEvents(name, id, r.stdout + r.stderr, r.code);
    });
  }

  /**
   * Postfix's smtp-source, runs of `sessions` parallel sessions × `messages` messages (a new
   * connection per message), one after another. Its Message-Ids start with the run's pid in hex;
   * a run that exits 0 got 250 for every message. Each run is one event: "acked" with the run's
   * id prefix in `id` (exit 0) or "error" with its stderr.
   */
  smtpSource(
    name: string,
    port: number,
    o: { from: string; to: string; sessions: number; messages: number },
  ): void {
    this.loop(name, async () => {
      const r = await runSmtpSource(port, o);
      return [
        {
          ev: r.code === 0 ? 'acked' : 'error',
          client: name,
          id: r.idPrefix,
          ...(r.code !== 0 ? { err: r.stderr.trim() } : {}),
          t: Date.now(),
        },
      ];
    });
  }

  /**
   * A client run from here: `run` once per round (one program run) until stop(), idle while
   * paused, a short pause after a round that went wrong.
   */
  private loop(name: string, run: () => Promise<TrafficEvent[]>): void {
    const events: TrafficEvent[] = [];
    let idle = false;
    const ended = (async (): Promise<void> => {
      while (!this.stopping) {
        idle = existsSync(this.pauseFile);
        if (idle) {
          await new Promise((r) => setTimeout(r, 20));
          continue;
        }
        const got = await run();
        events.push(...got);
        if (got.some((e) => e.ev !== 'acked')) await new Promise((r) => setTimeout(r, 50));
      }
    })();
    this.add({ name, idle: () => idle, events: () => events, ended, kill: () => {} });
  }

  private add(c: Client): void {
    this.clients.push(c);
  }

  /** Every event so far, of every client. */
  events(): TrafficEvent[] {
    return this.clients.flatMap((c) => c.events());
  }

  /** Messages (or smtp-source runs) acknowledged so far, per client. */
  ackedBy(client: string): number {
    return this.events().filter((e) => e.client === client && e.ev === 'acked').length;
  }

  /** Waits until every client has had `n` more acknowledgements than in `since`. */
  async progress(since: Map<string, number>, n: number, what: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      () => this.clients.every((c) => this.ackedBy(c.name) >= (since.get(c.name) ?? 0) + n),
      `${what}: ${n} more acknowledged by every client (${this.clients.map((c) => `${c.name} ${this.ackedBy(c.name)}`).join(', ')})`,
      timeoutMs,
    );
  }

  /** Acknowledgements so far per client (for progress()). */
  snapshot(): Map<string, number> {
    return new Map(this.clients.map((c) => [c.name, this.ackedBy(c.name)]));
  }

  /** Lets every client finish its session and then idle with no connection open. */
  pause(): void {
    writeFileSync(this.pauseFile, '');
  }

  /** Whether every client is idle after pause(). */
  idle(): boolean {
    return this.clients.every((c) => c.idle());
  }

  resume(): void {
    rmSync(this.pauseFile, { force: true });
  }

  /** Stops every client after its current session; kills those still running after `timeoutMs`. */
  async stop(timeoutMs = 60_000): Promise<void> {
    this.stopping = true;
    writeFileSync(this.stopFile, '');
    this.resume();
    const t = setTimeout(() => {
      for (const c of this.clients) c.kill();
    }, timeoutMs);
    await Promise.all(this.clients.map((c) => c.ended));
    clearTimeout(t);
  }
}

function kill(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** The events of one swaks run: what the message got, and any non-2xx reply before it. */
export function swaksEvents(client: string, id: string, out: string, code: number | null): TrafficEvent[] {
  const t = Date.now();
  const lines = out.split('\n');
  // Sent lines start " -> " (" ~> " inside TLS), replies "<-  " ("<~  "), refusals "<** " ("<~* ").
  const dot = lines.findIndex((l) => /^ [-~]> \.\r?$/.test(l));
  const isReply = (l: string): boolean => /^<[-~] /.test(l);
  const isRefusal = (l: string): boolean => /^<[-~*]\* /.test(l);
  const refused = (l: string, stage: string): TrafficEvent => {
    const m = /^<[-~*]\* +(\d{3})[ -](.*)$/.exec(l);
    return { ev: 'refused', client, id, code: Number(m?.[1] ?? 0), text: m?.[2] ?? l, stage, t };
  };
  const evs: TrafficEvent[] = [];
  const before = dot < 0 ? lines : lines.slice(0, dot);
  const bad = before.find(isRefusal);
  if (bad !== undefined) evs.push(refused(bad, 'session'));
  if (dot >= 0) {
    const reply = lines.slice(dot + 1).find((l) => isReply(l) || isRefusal(l));
    if (reply === undefined) evs.push({ ev: 'unknown', client, id, t });
    else if (/^<[-~] +250/.test(reply)) {
      evs.push({ ev: 'acked', client, id, t });
      const quit = lines.slice(dot + 1).find(isRefusal);
      if (quit !== undefined) evs.push(refused(quit, 'quit'));
    } else evs.push(refused(reply, 'dot'));
  } else if (bad === undefined && code !== 0) {
    evs.push({
      ev: 'error',
      client,
      id,
      stage: 'connect',
      err: out.trim().split('\n').slice(-3).join(' | '),
      t,
    });
  }
  return evs;
}

async function runSmtpSource(
  port: number,
  o: { from: string; to: string; sessions: number; messages: number },
): Promise<{ code: number | null; stderr: string; idPrefix: string }> {
  const child = spawn(
    toolPath('/usr/sbin/smtp-source') ?? '/usr/sbin/smtp-source',
    [
      '-s',
      String(o.sessions),
      '-m',
      String(o.messages),
      '-M',
      'traffic.test',
      '-f',
      o.from,
      '-t',
      o.to,
      `127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(t);
  return { code, stderr, idPrefix: `<${(child.pid ?? 0).toString(16).padStart(4, '0')}.` };
}

/** Copies of each Message-ID in the Maildirs under `mailRoot` (every user's new/) and in the sinks. */
export function copiesById(mailRoot: string, sinks: readonly SmtpSink[]): Map<string, number> {
  const copies = new Map<string, number>();
  const add = (text: string): void => {
    const id = messageIdOf(text) ?? '(none)';
    copies.set(id, (copies.get(id) ?? 0) + 1);
  };
  let users: string[] = [];
  try {
    users = readdirSync(mailRoot);
  } catch {
    // no mail delivered locally yet
  }
  for (const u of users) {
    const dir = join(mailRoot, u, 'new');
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) add(readFileSync(join(dir, n), 'latin1'));
  }
  for (const s of sinks) for (const tx of s.transactions) add(tx.data.toString('latin1'));
  return copies;
}

/**
 * The ledger's verdict: `expected(id)` copies for every acknowledged message and at most that
 * many for a message whose fate the client could not know (the line went during the final
 * reply, or a refusal); none of an id no client sent. smtp-source runs: a run that exited 0 has
 * each of its messages once; any run, at most once each. Returns the problems found (empty: all
 * well) and counts for the report.
 */
export function audit(
  events: readonly TrafficEvent[],
  copies: ReadonlyMap<string, number>,
  expected: (id: string) => number,
  smtpSource?: { messages: number; sessions: number },
): { problems: string[]; acked: number; unknown: number; duplicated: number; lost: number } {
  const problems: string[] = [];
  const acked = new Set<string>();
  const unsure = new Set<string>();
  const runs: { prefix: string; ok: boolean }[] = [];
  for (const e of events) {
    if (e.client.startsWith('smtp-source')) {
      if (e.id !== undefined) runs.push({ prefix: e.id, ok: e.ev === 'acked' });
    } else if (e.ev === 'acked' && e.id) acked.add(e.id);
    else if (e.id) unsure.add(e.id);
  }
  let lost = 0;
  let duplicated = 0;
  for (const id of acked) {
    const got = copies.get(id) ?? 0;
    if (got < expected(id)) {
      lost++;
      problems.push(`${id}: acknowledged, ${got} of ${expected(id)} copies delivered`);
    }
  }
  for (const [id, got] of copies) {
    const run = runs.find((r) => id.startsWith(r.prefix));
    const max = run !== undefined ? 1 : acked.has(id) || unsure.has(id) ? expected(id) : 0;
    if (got > max) {
      duplicated++;
      problems.push(`${id}: ${got} copies delivered, at most ${max} expected`);
    }
  }
  if (smtpSource)
    for (const r of runs) {
      if (!r.ok) continue;
      const n = [...copies.keys()].filter((id) => id.startsWith(r.prefix)).length;
      if (n !== smtpSource.messages)
        problems.push(
          `smtp-source run ${r.prefix}: exited 0, ${n} of ${smtpSource.messages} messages delivered`,
        );
    }
  return {
    problems,
    acked: acked.size,
    unknown: [...unsure].filter((id) => !acked.has(id)).length,
    duplicated,
    lost,
  };
}

/**
 * A slow next hop: it takes each message at once (its data recorded) and answers the end of
 * data `holdMs` later. `takenAt`: when it took each Message-ID (the last time, if twice).
 */
export async function slowSink(holdMs: number): Promise<{ sink: SmtpSink; takenAt: Map<string, number> }> {
  const takenAt = new Map<string, number>();
  const sink = await SmtpSink.start({
    holdDataReply: () => sleep(holdMs),
    dataReply: (tx) => {
      takenAt.set(messageIdOf(tx.data.toString('latin1')) ?? '?', Date.now());
      return undefined;
    },
  });
  return { sink, takenAt };
}

/**
 * A daemon on a fixed port (a restart binds it again) relaying for loopback clients, with the
 * local domain local.test and r.test routed to `sinkPort`, retrying after 1 s.
 */
export async function relayStage(
  stage: (o: StageOptions) => Promise<Stage>,
  sinkPort: number,
): Promise<{ s: Stage; port: number }> {
  const port = await reservePort();
  const s = await stage({
    toml: `
[smtp]
listen = ["127.0.0.1:${port}"]
relay_networks = ["127.0.0.0/8"]
[[local]]
domain = "local.test"
[[route]]
domain = "r.test"
host = "127.0.0.1:${sinkPort}"
[queue]
retry = ["1s"]
`,
  });
  return { s, port };
}
