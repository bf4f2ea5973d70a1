// Readers of the sections about DNS and mail authentication: [dns] (how every lookup is made).
// Same contract as sections.ts: defaults from defaults.ts, problems recorded on the reader
// (never thrown), the returned value incomplete only when a problem was recorded.

import { DEFAULTS } from './defaults.js';
import { parseHostPort } from './net.js';
import type { Section } from './reader.js';
import type { DnsConfig } from './schema.js';
import { parseDuration } from './units.js';

export function readDns(sec: Section | undefined, empty: () => Section): DnsConfig {
  const d = DEFAULTS.dns;
  const s = sec ?? empty();
  const c: DnsConfig = {
    servers: s.listOf('servers', (v) => parseHostPort(v, { requireIp: true, defaultPort: d.port })) ?? [],
    timeoutMs: s.duration('timeout') ?? parseDuration(d.timeout),
    attempts: s.positiveInt('attempts') ?? d.attempts,
    cacheSize: s.nonNegativeInt('cache_size') ?? d.cacheSize,
    maxTtlMs: s.duration('max_ttl', { allowZero: true }) ?? parseDuration(d.maxTtl),
    maxNegativeTtlMs: s.duration('max_negative_ttl', { allowZero: true }) ?? parseDuration(d.maxNegativeTtl),
  };
  s.finish();
  return c;
}
