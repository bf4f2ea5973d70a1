// Membership: every heartbeat this node writes its record (name, addresses, version, queue depth,
// held pieces per domain) into the nodes hash and refreshes its alive key (TTL node_ttl), then
// reads every node's record and alive key. A node is alive while its alive key exists; its
// record stays after it dies, so `cluster status` shows dead nodes and their last known queue,
// and mail for a dead home still knows the address to wait for.
// The view (who is alive, and where) is also kept in data_dir/cluster-nodes.json, rewritten when
// a node's address, liveness or start changes, so that a node restarted while Redis is down still
// knows where its peers are and can transfer held mail to their homes.
// Invariant: the view only changes on a heartbeat that Redis answered; while Redis is
// unreachable the last known view — if need be the saved one — stays in force (this node always
// counts itself alive).
// Fails: never throws; a heartbeat Redis did not answer changes nothing and is retried on the
// next tick; a copy that cannot be read or written is ignored (Redis is the source).

import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Clock } from '../util/clock.js';
import type { Keys } from './keys.js';
import type { RedisLink } from './redis.js';

export interface NodeRecord {
  node: string;
  version: string;
  /** Where peers reach its SMTP ("host:port"). */
  smtp: string;
  /** Where peers reach its ODMR listener, when it has one. */
  odmr?: string;
  startedAt: number;
  /** When the record was written (the node's clock). */
  at: number;
  queue: { messages: number; lanes: Record<string, number> };
  /** Held pieces per ETRN/ODMR domain (only domains with mail). */
  held: Record<string, number>;
  draining: boolean;
}

export interface NodeView extends NodeRecord {
  alive: boolean;
}

let version: string | undefined;
/** logmta's version (package.json), for the heartbeat record. */
export function logmtaVersion(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
        version?: string;
      };
      version = pkg.version ?? 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

export function parseRecord(name: string, json: string): NodeRecord | undefined {
  try {
    const r = JSON.parse(json) as Partial<NodeRecord>;
    if (typeof r !== 'object' || r === null || typeof r.smtp !== 'string') return undefined;
    const rec: NodeRecord = {
      node: name,
      version: typeof r.version === 'string' ? r.version : 'unknown',
      smtp: r.smtp,
      startedAt: typeof r.startedAt === 'number' ? r.startedAt : 0,
      at: typeof r.at === 'number' ? r.at : 0,
      queue: r.queue && typeof r.queue === 'object' ? r.queue : { messages: 0, lanes: {} },
      held: r.held && typeof r.held === 'object' ? r.held : {},
      draining: r.draining === true,
    };
    if (typeof r.odmr === 'string') rec.odmr = r.odmr;
    return rec;
  } catch {
    return undefined;
  }
}

/** Reads every node's record and whether it is alive (CLI, and each heartbeat). */
export async function readNodes(link: RedisLink, keys: Keys): Promise<Map<string, NodeView> | undefined> {
  const all = await link.run((r) => r.hgetall(keys.nodes));
  if (all === undefined) return undefined;
  const names = Object.keys(all).sort();
  const alive =
    names.length === 0 ? [] : await link.run((r) => r.mget(...names.map((n) => keys.alive(n))), 1);
  if (alive === undefined) return undefined;
  const out = new Map<string, NodeView>();
  names.forEach((n, i) => {
    const rec = parseRecord(n, all[n]!);
    if (rec) out.set(n, { ...rec, alive: alive[i] !== null });
  });
  return out;
}

export interface MembershipOptions {
  link: RedisLink;
  keys: Keys;
  self: string;
  heartbeatMs: number;
  ttlMs: number;
  clock: Clock;
  /** This node's record as it stands now. */
  record(): Omit<NodeRecord, 'node' | 'at' | 'version'>;
  /** Where the last known view is kept across restarts (none: memory only). */
  cacheFile?: string;
  /** Told when the copy cannot be written. */
  onSaveError?: (e: unknown) => void;
}

/** What of the view is worth a rewrite of the copy when it changes. */
function signature(view: Map<string, NodeView>): string {
  return JSON.stringify([...view.values()].map((v) => [v.node, v.smtp, v.odmr, v.alive, v.startedAt]));
}

export class Membership {
  private view = new Map<string, NodeView>();
  private cancel: (() => void) | undefined;
  private stopped = false;
  private beating: Promise<void> | undefined;
  private readonly changeListeners: Array<(alive: string[], died: string[]) => void> = [];
  private saved = '';
  /** When the view was last read from Redis (Date.now()); 0 never. */
  readAt = 0;
  readonly version = logmtaVersion();

  constructor(private readonly o: MembershipOptions) {
    this.load();
  }

  /** First heartbeat (awaited, bounded by the Redis timeout), then one every heartbeatMs. */
  async start(): Promise<void> {
    await this.beat();
    this.schedule();
  }

  /** The saved view, as the last known one until Redis answers. */
  private load(): void {
    if (this.o.cacheFile === undefined) return;
    try {
      const saved = JSON.parse(readFileSync(this.o.cacheFile, 'utf8')) as Record<
        string,
        { alive?: unknown; record?: string }
      >;
      for (const [n, v] of Object.entries(saved)) {
        const rec = typeof v.record === 'string' ? parseRecord(n, v.record) : undefined;
        if (rec && n !== this.o.self) this.view.set(n, { ...rec, alive: v.alive === true });
      }
      this.saved = signature(this.view);
    } catch {
      // No copy yet (first start) or unreadable: Redis is the source anyway.
    }
  }

  private save(): void {
    const file = this.o.cacheFile;
    if (file === undefined) return;
    const sig = signature(this.view);
    if (sig === this.saved) return;
    const out: Record<string, { alive: boolean; record: string }> = {};
    for (const [n, v] of this.view) {
      const { alive, ...rec } = v;
      out[n] = { alive, record: JSON.stringify(rec) };
    }
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(out), { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
      this.saved = sig;
    } catch (e) {
      this.o.onSaveError?.(e);
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    this.cancel = this.o.clock.setTimer(this.o.heartbeatMs, () => {
      void this.beat().finally(() => this.schedule());
    });
  }

  /** Reads every node's record without writing ours (start-up, before the listeners are bound). */
  async refresh(): Promise<void> {
    const nodes = await readNodes(this.o.link, this.o.keys);
    if (nodes !== undefined) {
      this.view = nodes;
      this.readAt = Date.now();
      this.save();
    }
  }

  /** Told of nodes that came alive and nodes that died, at each heartbeat that saw a change. */
  onChange(fn: (alive: string[], died: string[]) => void): void {
    this.changeListeners.push(fn);
  }

  /** Writes our record and reads everyone's. Concurrent calls share one beat. */
  beat(): Promise<void> {
    this.beating ??= this.doBeat().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  private async doBeat(): Promise<void> {
    const { link, keys, self } = this.o;
    const rec: NodeRecord = { node: self, version: this.version, at: this.o.clock.now(), ...this.o.record() };
    const wrote = await link.run(
      (r) =>
        r
          .multi()
          .hset(keys.nodes, self, JSON.stringify(rec))
          .set(keys.alive(self), '1', 'PX', this.o.ttlMs)
          .exec(),
      2,
    );
    if (wrote === undefined) return;
    const nodes = await readNodes(link, keys);
    if (nodes === undefined || this.stopped) return;
    const mine = nodes.get(self);
    if (mine) mine.alive = true;
    const before = this.view;
    const cameAlive: string[] = [];
    const died: string[] = [];
    for (const [n, v] of nodes) {
      const prev = before.get(n);
      const was = prev?.alive ?? false;
      // A node restarted within its TTL (a crash and a quick start) never looked dead: its new
      // start time says it is back.
      if (v.alive && (!was || (prev !== undefined && prev.startedAt !== v.startedAt))) cameAlive.push(n);
      if (!v.alive && was) died.push(n);
    }
    this.view = nodes;
    this.readAt = Date.now();
    this.save();
    if (cameAlive.length > 0 || died.length > 0) for (const l of this.changeListeners) l(cameAlive, died);
  }

  /** The last known view of every node. */
  nodes(): Map<string, NodeView> {
    return this.view;
  }

  get(node: string): NodeView | undefined {
    return this.view.get(node);
  }

  /** Nodes alive now (ourselves always), optionally without draining ones. */
  live(opts: { withoutDraining?: boolean } = {}): string[] {
    const out = new Set<string>([this.o.self]);
    for (const [n, v] of this.view) if (v.alive && !(opts.withoutDraining && v.draining)) out.add(n);
    if (opts.withoutDraining && this.view.get(this.o.self)?.draining) out.delete(this.o.self);
    return [...out].sort();
  }

  isAlive(node: string): boolean {
    return node === this.o.self || this.view.get(node)?.alive === true;
  }

  /** Stops the heartbeat and removes our alive key (peers then see us gone at once). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancel?.();
    await this.beating?.catch(() => {});
    await this.o.link.run((r) => r.del(this.o.keys.alive(this.o.self)));
  }
}
