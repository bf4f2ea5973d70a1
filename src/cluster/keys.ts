// The names of everything the cluster keeps in Redis, in one place (docs/cluster.md lists them).
// Every key and channel starts with [cluster] prefix, so several clusters can share one Redis.
//   <p>nodes              hash   node name → its last heartbeat record (JSON), kept after it dies
//   <p>alive:<node>       string "1" with a TTL of node_ttl, refreshed by every heartbeat
//   <p>homes              hash   ETRN/ODMR domain → home node name
//   <p>drain              hash   node name → JSON drain state (started, by whom)
//   <p>events             channel JSON notices: home changed, drain started/stopped
//   <p>limit:<kind>:<key> counters, GCRA cells and connection leases of the shared limits
// Pure: strings only.

export class Keys {
  constructor(readonly prefix: string) {}

  get nodes(): string {
    return `${this.prefix}nodes`;
  }

  alive(node: string): string {
    return `${this.prefix}alive:${node}`;
  }

  get homes(): string {
    return `${this.prefix}homes`;
  }

  get drain(): string {
    return `${this.prefix}drain`;
  }

  get events(): string {
    return `${this.prefix}events`;
  }

  limit(kind: string, key: string): string {
    return `${this.prefix}limit:${kind}:${key}`;
  }
}

/** What nodes tell each other over the events channel. */
export type ClusterNotice =
  | { type: 'home'; domain: string; node: string; from?: string }
  | { type: 'drain'; node: string; on: boolean };

/** Parses a notice; null for anything that is not one of ours. */
export function parseNotice(text: string): ClusterNotice | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (o.type === 'home' && typeof o.domain === 'string' && typeof o.node === 'string') {
    const n: ClusterNotice = { type: 'home', domain: o.domain, node: o.node };
    if (typeof o.from === 'string') n.from = o.from;
    return n;
  }
  if (o.type === 'drain' && typeof o.node === 'string' && typeof o.on === 'boolean')
    return { type: 'drain', node: o.node, on: o.on };
  return null;
}
