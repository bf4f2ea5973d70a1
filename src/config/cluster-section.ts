// Reader of the [cluster] section: this node's name, where the cluster's Redis is (a URL, or a
// list of Sentinels with the master's name), the Redis password and the node-to-node secret
// (each inline or from a file), the addresses peers use to reach this node, timings, and the
// limits shared over the whole cluster. Same contract as sections.ts: problems are recorded on
// the reader, never thrown; the value returned is incomplete only when a problem was recorded.
// Invariant: a [cluster] that passes names a node, a Redis and a secret of at least 16 bytes;
// the advertised addresses, when given, are ones a peer can connect to (no wildcard, no port 0).

import { DEFAULTS } from './defaults.js';
import { type HostPort, parseHostPort } from './net.js';
import type { Section } from './reader.js';
import type { ClusterConfig, RateSpec, RedisEndpoint } from './schema.js';
import { formatDuration, parseDuration, RATE_PERIODS, valueError } from './units.js';
import { readSecret } from './values.js';

const NODE = /^[a-z0-9](?:[a-z0-9._-]{0,62})$/;
const WILDCARDS = new Set(['0.0.0.0', '::']);

/** "100/s", "1,000/hour", "6000/min,max_burst=200": a GCRA rate (burst defaults to the count). */
export function parseRate(input: string): RateSpec {
  const expected = 'a rate like "100/s", "6000/min" or "1000/h,max_burst=50"';
  const m = /^\s*(\d[\d,_]*)\s*\/\s*([a-z]+)\s*(?:,\s*max_burst\s*=\s*(\d[\d,_]*)\s*)?$/i.exec(input);
  if (!m) throw valueError(expected, input);
  const count = Number(m[1]!.replace(/[,_]/g, ''));
  const periodMs = RATE_PERIODS[m[2]!.toLowerCase()];
  const burst = m[3] === undefined ? count : Number(m[3].replace(/[,_]/g, ''));
  if (periodMs === undefined || !Number.isSafeInteger(count) || count < 1 || !(burst >= 1))
    throw valueError(expected, input);
  return { count, periodMs, burst };
}

function parseNode(s: string): string {
  if (!NODE.test(s)) throw valueError('a node name of lower-case letters, digits and . _ - (at most 63)', s);
  return s;
}

function parseAdvertise(s: string): HostPort {
  const hp = parseHostPort(s);
  if (WILDCARDS.has(hp.host)) throw valueError('an address peers can connect to (not a wildcard)', s);
  return hp;
}

function readRedis(s: Section): RedisEndpoint | undefined {
  const raw = s.raw('redis');
  const d = DEFAULTS.cluster;
  if (raw === undefined) {
    s.required(
      'redis',
      () => undefined,
      'required (a URL like "redis://127.0.0.1:6379/0", or a Sentinel list)',
    );
    return undefined;
  }
  if (typeof raw === 'string') {
    const url = s.map('redis', (u) => {
      let parsed: URL;
      try {
        parsed = new URL(u);
      } catch {
        throw valueError('a URL like "redis://127.0.0.1:6379/0"', u);
      }
      if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:')
        throw valueError('a redis:// or rediss:// URL', u);
      if (parsed.hostname === '') throw valueError('a URL with a host', u);
      if (parsed.pathname !== '' && parsed.pathname !== '/' && !/^\/\d{1,2}$/.test(parsed.pathname))
        throw valueError('a URL whose path is a database number ("/0")', u);
      return u;
    });
    if (s.has('sentinel_master')) s.problem('sentinel_master', 'only with a list of Sentinels in redis');
    if (s.has('db'))
      s.problem('db', 'only with Sentinels (give the database in the URL: "redis://host:6379/2")');
    s.string('sentinel_master');
    s.nonNegativeInt('db');
    return url === undefined ? undefined : { kind: 'url', url };
  }
  const sentinels = s.listOf('redis', (v) => parseHostPort(v, { defaultPort: d.sentinelPort }), {
    nonEmpty: true,
  });
  const master = s.string('sentinel_master');
  if (master === undefined && !s.has('sentinel_master'))
    s.problem('sentinel_master', 'required with a list of Sentinels (the name they monitor the master by)');
  const db = s.nonNegativeInt('db') ?? 0;
  if (db > 15) s.problem('db', `expected a database number 0..15, got ${db}`);
  if (sentinels === undefined || master === undefined) return undefined;
  return { kind: 'sentinel', sentinels, master, db };
}

export function readCluster(sec: Section | undefined, baseDir: string): ClusterConfig | undefined {
  if (sec === undefined) return undefined;
  const d = DEFAULTS.cluster;
  const s = sec;
  const node = s.required('node', parseNode, 'required (this node\'s unique name, e.g. "mx1")');
  const redis = readRedis(s);
  const password = readSecret(s, 'password', 'password_file', baseDir, false);
  const secret = readSecret(s, 'secret', 'secret_file', baseDir, true);
  if (secret !== undefined && Buffer.byteLength(secret) < 16)
    s.problem(
      s.has('secret') ? 'secret' : 'secret_file',
      'the cluster secret must be at least 16 bytes long',
    );
  const heartbeatMs = s.duration('heartbeat') ?? parseDuration(d.heartbeat);
  const nodeTtlMs = s.duration('node_ttl') ?? parseDuration(d.nodeTtl);
  if (nodeTtlMs < 2 * heartbeatMs)
    s.problem(
      'node_ttl',
      `must be at least twice heartbeat (${formatDuration(heartbeatMs)}), got ${formatDuration(nodeTtlMs)}`,
    );
  const prefix = s.string('prefix') ?? d.prefix;
  if (!/^[\x21-\x7e]{0,64}$/.test(prefix)) s.problem('prefix', 'expected at most 64 printable characters');
  const c: ClusterConfig = {
    node: node ?? '',
    redis: redis ?? { kind: 'url', url: '' },
    password,
    advertise: s.map('advertise', parseAdvertise),
    odmrAdvertise: s.map('odmr_advertise', parseAdvertise),
    secret: secret ?? '',
    prefix,
    heartbeatMs,
    nodeTtlMs,
    transferIntervalMs: s.duration('transfer_interval') ?? parseDuration(d.transferInterval),
    redisTimeoutMs: s.duration('redis_timeout') ?? parseDuration(d.redisTimeout),
    connectionsPerDestination: s.nonNegativeInt('connections_per_destination') ?? d.connectionsPerDestination,
    messageRate: s.map('message_rate_per_destination', parseRate),
  };
  s.finish();
  return c;
}
