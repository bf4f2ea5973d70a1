// Built-in defaults of every configuration key, in the file's own notation (strings with
// units, "host:port"), so that defaults pass through exactly the same parsers as the file.
// Invariant: each default here is listed with the same value in docs/configuration.md.
// Defaults that depend on other keys (paths under data_dir) are functions of the resolved
// data_dir and are applied by load.ts.

import { hostname } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SPARE_SEGMENTS } from '../queue/index.js';

export const DEFAULTS = {
  /** Relative to the current directory (not to the config file). */
  dataDir: './logmta-data',
  hostname: (): string => hostname(),
  smtp: {
    listen: ['127.0.0.1:2525'],
    submission: [] as string[],
    submissions: [] as string[],
    maxMessageSize: '50MiB',
    maxRecipients: 1000,
    maxConnections: 1000,
    maxConnectionsPerIp: 50,
    relayNetworks: [] as string[],
    relayDomains: [] as string[],
    idleTimeout: '5m',
    commandTimeout: '5m',
    dataLineTimeout: '5m',
    /** Octets per second (Postfix's smtpd_min_data_rate default). */
    minDataRate: 500,
    allowPlainAuthWithoutTls: false,
    sessionThread: true,
    authMaxFailures: 5,
    authBlockTime: '10m',
    authFailureDelay: '1s',
    authFailureDelayMax: '16s',
    /** Besides relay_networks, when client_rate_exceptions is not set. */
    clientRateExceptions: ['127.0.0.0/8', '::1/128'],
  },
  tls: {
    /** ciphers: none here; the listeners' own list (src/smtp/server/tls-policy.ts) is the default. */
    minVersion: 'TLSv1.2',
  },
  queue: {
    paths: (dataDir: string): string[] => [join(dataDir, 'queue')],
    retry: ['5m', '15m', '30m', '1h', '2h', '4h', '8h'],
    maxAge: '5d',
    delayWarning: '4h',
    segmentSize: '64MiB',
    reserve: '4MiB',
    /** Reclaimed segment files kept zeroed for reuse (src/queue/log/spares.ts). */
    spareSegments: DEFAULT_SPARE_SEGMENTS,
    /** Smallest accepted segment_size, to catch a unit forgotten ("64" meaning bytes). */
    minSegmentSize: 4096,
    memoryBudget: '256MiB',
    /** Smallest accepted memory_budget: below a few chunks, every transaction would be refused. */
    minMemoryBudget: 4 * 1024 * 1024,
  },
  local: {
    /** Used when the file has no `local` key at all; `local = []` means no local domains. */
    domains: ['localhost'],
    maildir: (dataDir: string): string => join(dataDir, 'mail', '{user}'),
  },
  lmtp: {
    port: 24,
  },
  milter: {
    connectTimeout: '30s',
    commandTimeout: '30s',
    contentTimeout: '5m',
    defaultAction: 'tempfail' as const,
  },
  route: {
    port: 25,
    requireTls: false,
    verifyTls: false,
  },
  delivery: {
    concurrencyPerDestination: 20,
    concurrencyPerHost: 50,
    maxConnections: 200,
    connectTimeout: '30s',
    greetingTimeout: '30s',
    connectionReuseTime: '5m',
    mxAddressLimit: 5,
    mtaSts: true,
    dane: true,
  },
  etrn: {
    port: 25,
    probeInterval: '15m',
    subdomains: false,
  },
  etrnLimits: {
    maxConcurrentFlushes: 4,
    requestsPerClient: 10,
    requestWindow: '1m',
  },
  odmr: {
    listen: ['127.0.0.1:3366'],
    providerPort: 366,
    providerInterval: '15m',
    authPerMinute: 30,
  },
  admin: {
    socket: (dataDir: string): string => join(dataDir, 'admin.sock'),
    allowRemote: false,
  },
  log: {
    format: 'json' as const,
    level: 'info' as const,
  },
  dns: {
    port: 53,
    timeout: '2s',
    attempts: 2,
    cacheSize: 10_000,
    maxTtl: '1h',
    maxNegativeTtl: '15m',
    dnssec: 'loopback' as const,
  },
  cluster: {
    prefix: 'logmta:',
    heartbeat: '2s',
    nodeTtl: '10s',
    transferInterval: '30s',
    redisTimeout: '1s',
    redisPort: 6379,
    sentinelPort: 26379,
    connectionsPerDestination: 0,
  },
  auth: {
    checks: false,
    dmarcReject: false,
    tempfailOnDnsError: false,
    timeout: '20s',
  },
} as const;
