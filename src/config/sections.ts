// One reader per section of the configuration file: each takes the section's strict reader
// (or undefined when the section is absent), applies defaults.ts and returns the resolved
// part of the Config. Paths: files the operator provides (TLS, *_file secrets) resolve
// against the config file's directory (`baseDir`); state logmta writes (queue, maildirs,
// admin socket) resolves against data_dir.
// Failure: never throws for bad input; problems are recorded on the reader and the returned
// value is incomplete (load.ts throws before anyone sees it).

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { MAX_MESSAGE_SIZE, MAX_SEGMENT_SIZE } from '../queue/index.js';
import { parseLoginAddress, readRate } from './access-section.js';
import { DEFAULTS } from './defaults.js';
import { MtaError } from '../errors.js';
import { serverSecureContext, type TlsMinVersion } from '../smtp/server/tls-policy.js';
import { type HostPort, isLoopbackHost, parseCidr, parseHostPort } from './net.js';
import type { Section } from './reader.js';
import type {
  AdminConfig,
  DeliveryConfig,
  EtrnDomain,
  EtrnLimitsConfig,
  LocalDomain,
  LogConfig,
  MilterConfig,
  OdmrAccount,
  OdmrConfig,
  OdmrProvider,
  QueueConfig,
  Route,
  SmtpConfig,
  SocketAddress,
  TlsConfig,
  UserAccount,
} from './schema.js';
import { isMailboxName } from '../util/local-part.js';
import { formatDuration, parseDuration, parseSize } from './units.js';
import {
  parseDomain,
  parseLocalUser,
  parseRouteDomain,
  parseUserName,
  readPem,
  readSecret,
} from './values.js';

export interface Paths {
  /** Directory of the config file (cwd without a file): base of operator-provided files. */
  baseDir: string;
  /** Resolved data_dir: base of state paths. */
  dataDir: string;
}

export const parseListen = (s: string): HostPort =>
  parseHostPort(s, { requireIp: true, allowPortZero: true });

/** Runs `fn` on the section, or on an empty one when absent, and checks unknown keys. */
function within<T>(sec: Section | undefined, empty: () => Section, fn: (s: Section) => T): T {
  const s = sec ?? empty();
  const r = fn(s);
  s.finish();
  return r;
}

/** `clustered`: the file has a [cluster] table, whose SMTP sessions stay on the main thread. */
export function readSmtp(sec: Section | undefined, empty: () => Section, clustered = false): SmtpConfig {
  const d = DEFAULTS.smtp;
  return within(sec, empty, (s) => {
    const authFailureDelayMs =
      s.duration('auth_failure_delay', { allowZero: true }) ?? parseDuration(d.authFailureDelay);
    const authFailureDelayMaxMs =
      s.duration('auth_failure_delay_max', { allowZero: true }) ?? parseDuration(d.authFailureDelayMax);
    if (authFailureDelayMaxMs < authFailureDelayMs) {
      s.problem(
        'auth_failure_delay_max',
        `must be at least auth_failure_delay (${formatDuration(authFailureDelayMs)}), got ${formatDuration(authFailureDelayMaxMs)}`,
      );
    }
    const relayNetworks = s.listOf('relay_networks', parseCidr) ?? [];
    return {
      listen: s.listOf('listen', parseListen) ?? d.listen.map(parseListen),
      submission: s.listOf('submission', parseListen) ?? [],
      submissions: s.listOf('submissions', parseListen) ?? [],
      maxMessageSize:
        s.size('max_message_size', 1, {
          bytes: MAX_MESSAGE_SIZE,
          why: 'the largest message the queue stores',
        }) ?? parseSize(d.maxMessageSize),
      maxRecipients: s.positiveInt('max_recipients') ?? d.maxRecipients,
      maxConnections: s.positiveInt('max_connections') ?? d.maxConnections,
      maxConnectionsPerIp: s.positiveInt('max_connections_per_ip') ?? d.maxConnectionsPerIp,
      relayNetworks,
      relayDomains: s.listOf('relay_domains', parseDomain) ?? [],
      idleTimeoutMs: s.duration('idle_timeout') ?? parseDuration(d.idleTimeout),
      commandTimeoutMs: s.duration('command_timeout') ?? parseDuration(d.commandTimeout),
      dataLineTimeoutMs: s.duration('data_line_timeout') ?? parseDuration(d.dataLineTimeout),
      minDataRate: s.size('min_data_rate', 0) ?? d.minDataRate,
      allowPlainAuthWithoutTls: s.bool('allow_plain_auth_without_tls') ?? d.allowPlainAuthWithoutTls,
      // On by default, except in a cluster (its hooks run on the main thread).
      sessionThread: s.bool('session_thread') ?? (d.sessionThread && !clustered),
      authMaxFailures: s.positiveInt('auth_max_failures') ?? d.authMaxFailures,
      authBlockTimeMs: s.duration('auth_block_time') ?? parseDuration(d.authBlockTime),
      authFailureDelayMs,
      authFailureDelayMaxMs,
      clientConnectionRate: readRate(s, 'client_connection_rate'),
      clientMessageRate: readRate(s, 'client_message_rate'),
      clientRecipientRate: readRate(s, 'client_recipient_rate'),
      // Postfix's smtpd_client_event_limit_exceptions ($mynetworks, which holds loopback by default).
      clientRateExceptions: s.listOf('client_rate_exceptions', parseCidr) ?? [
        ...relayNetworks,
        ...d.clientRateExceptions.map(parseCidr),
      ],
    };
  });
}

export function readTls(sec: Section | undefined, paths: Paths): TlsConfig | undefined {
  if (sec === undefined) return undefined;
  const cert = readPem(sec, 'cert', paths.baseDir);
  const key = readPem(sec, 'key', paths.baseDir);
  if (!sec.has('cert')) sec.problem('cert', 'required when [tls] is present');
  if (!sec.has('key')) sec.problem('key', 'required when [tls] is present');
  const minVersion = (sec.string('min_version', { oneOf: ['TLSv1.2', 'TLSv1.3'] }) ??
    DEFAULTS.tls.minVersion) as TlsMinVersion;
  const ciphers = sec.string('ciphers');
  let ciphersOk = ciphers !== undefined || !sec.has('ciphers');
  if (ciphers !== undefined) {
    try {
      createSecureContext({ ciphers });
    } catch (e) {
      sec.problem(
        'ciphers',
        `OpenSSL matches no cipher in ${JSON.stringify(ciphers)} (${(e as Error).message})`,
      );
      ciphersOk = false;
    }
    // Names starting with TLS_ are TLS 1.3 suites; a list of only those leaves TLS 1.2 without any.
    if (
      ciphersOk &&
      minVersion === 'TLSv1.2' &&
      ciphers.split(':').every((c) => c.trim().startsWith('TLS_'))
    ) {
      sec.problem('ciphers', 'lists only TLS 1.3 suites: add TLS 1.2 ones or set min_version = "TLSv1.3"');
      ciphersOk = false;
    }
  }
  sec.finish();
  if (!cert || !key || !ciphersOk) return undefined;
  // OpenSSL keeps an RSA and an EC key side by side, so a key of the other type than the
  // certificate's passes the context below and fails every handshake: compare them directly.
  try {
    if (!new X509Certificate(cert.text).checkPrivateKey(createPrivateKey(key.text))) {
      sec.problem('key', `does not fit the certificate in ${cert.file} (it is not its private key)`);
      return undefined;
    }
  } catch (e) {
    sec.problem('cert', `cannot be read as a certificate with this key (${(e as Error).message})`);
    return undefined;
  }
  try {
    // Fails here, at start-up, rather than on the first STARTTLS: the same policy the
    // listeners use, with this key and certificate.
    serverSecureContext({ cert: cert.text, key: key.text, minVersion, ...(ciphers ? { ciphers } : {}) });
  } catch (e) {
    sec.problem('key', `does not fit the certificate (${(e as Error).message})`);
    return undefined;
  }
  return { certFile: cert.file, keyFile: key.file, cert: cert.text, key: key.text, minVersion, ciphers };
}

export function readUsers(list: Section[] | undefined, paths: Paths): UserAccount[] {
  return (list ?? []).map((s) => {
    const name = s.required('name', parseUserName);
    const password = readSecret(s, 'password', 'password_file', paths.baseDir, true);
    const addresses = s.listOf('addresses', parseLoginAddress, { nonEmpty: true });
    s.finish();
    const u: UserAccount = { name: name ?? '', password: password ?? '' };
    if (addresses !== undefined) u.addresses = addresses;
    return u;
  });
}

/** A list of durations (strings with units or integer seconds), each > 0. */
function durationList(s: Section, k: string): number[] | undefined {
  const v = s.raw(k);
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0) {
    s.problem(k, 'expected a non-empty array of durations like ["5m", "1h"]');
    return undefined;
  }
  const out = v.map((e, i) => s.durationValue(`${s.key(k)}[${i + 1}]`, e));
  return out.every((x) => x !== undefined) ? (out as number[]) : undefined;
}

export function readQueue(sec: Section | undefined, empty: () => Section, paths: Paths): QueueConfig {
  const d = DEFAULTS.queue;
  return within(sec, empty, (s) => {
    const queuePaths =
      s.listOf('paths', (p) => resolve(paths.dataDir, p), { nonEmpty: true }) ?? d.paths(paths.dataDir);
    if (new Set(queuePaths).size !== queuePaths.length) s.problem('paths', 'a directory is listed twice');
    return {
      paths: queuePaths,
      retryMs: durationList(s, 'retry') ?? d.retry.map(parseDuration),
      maxAgeMs: s.duration('max_age') ?? parseDuration(d.maxAge),
      delayWarningMs: s.duration('delay_warning', { allowZero: true }) ?? parseDuration(d.delayWarning),
      segmentSize:
        s.size('segment_size', d.minSegmentSize, {
          bytes: MAX_SEGMENT_SIZE,
          why: 'record offsets in a segment are 32-bit',
        }) ?? parseSize(d.segmentSize),
      memoryBudget:
        s.size('memory_budget', d.minMemoryBudget, {
          bytes: 64 * 1024 ** 3,
          why: 'more than a process holds',
        }) ?? parseSize(d.memoryBudget),
      reserve: s.size('reserve', 0) ?? parseSize(d.reserve),
      spareSegments: s.nonNegativeInt('spare_segments') ?? d.spareSegments,
    };
  });
}

/** "unix:/path" or an absolute path: a unix socket; otherwise "host[:port]". */
function parseSocketAddress(s: string, defaultPort: number, baseDir: string): SocketAddress {
  const unix = s.startsWith('unix:') ? s.slice(5) : s.startsWith('/') ? s : undefined;
  if (unix !== undefined) {
    if (unix === '') throw valueErrorFor('a socket path after "unix:"', s);
    return { kind: 'unix', path: resolve(baseDir, unix) };
  }
  const hp = parseHostPort(s.startsWith('inet:') ? s.slice(5) : s, { defaultPort });
  return { kind: 'inet', host: hp.host, port: hp.port };
}

function valueErrorFor(expected: string, got: string): MtaError {
  return new MtaError('CONFIG_VALUE', 'permanent', `expected ${expected}, got ${JSON.stringify(got)}`);
}

/** A milter address as Postfix writes it: "inet:host:port" or "unix:/path". */
function parseMilterAddress(s: string, baseDir: string): SocketAddress {
  if (!s.startsWith('inet:') && !s.startsWith('unix:') && !s.startsWith('local:'))
    throw valueErrorFor('"inet:host:port" or "unix:/path"', s);
  if (s.startsWith('inet:') && !/:\d+$/.test(s.slice(5)))
    throw valueErrorFor('a port in "inet:host:port"', s);
  return parseSocketAddress(s.startsWith('local:') ? `unix:${s.slice(6)}` : s, 0, baseDir);
}

export function readMilters(list: Section[] | undefined, paths: Paths): MilterConfig[] {
  const d = DEFAULTS.milter;
  return (list ?? []).map((s) => {
    const address = s.required('address', (a) => parseMilterAddress(a, paths.baseDir));
    const m: MilterConfig = {
      name: s.string('name') ?? String(s.raw('address') ?? ''),
      address: address ?? { kind: 'unix', path: '' },
      connectTimeoutMs: s.duration('connect_timeout') ?? parseDuration(d.connectTimeout),
      commandTimeoutMs: s.duration('command_timeout') ?? parseDuration(d.commandTimeout),
      contentTimeoutMs: s.duration('content_timeout') ?? parseDuration(d.contentTimeout),
      defaultAction:
        (s.string('default_action', { oneOf: ['accept', 'tempfail', 'reject'] }) as
          | MilterConfig['defaultAction']
          | undefined) ?? d.defaultAction,
    };
    s.finish();
    return m;
  });
}

export function readLocal(list: Section[] | undefined, present: boolean, paths: Paths): LocalDomain[] {
  const defaultMaildir = DEFAULTS.local.maildir(paths.dataDir);
  if (!present)
    return DEFAULTS.local.domains.map((domain) => ({
      domain,
      maildir: defaultMaildir,
      users: undefined,
      lmtp: undefined,
    }));
  return (list ?? []).map((s) => {
    const domain = s.required('domain', parseDomain);
    let maildir = s.map('maildir', (m) => resolve(paths.dataDir, m)) ?? defaultMaildir;
    if (!maildir.includes('{user}')) {
      s.problem('maildir', `must contain "{user}", got ${JSON.stringify(s.raw('maildir'))}`);
      maildir = defaultMaildir;
    }
    const users = s.listOf('users', parseLocalUser);
    // State paths resolve against data_dir; an LMTP socket is another server's, like a TLS file.
    const lmtp = s.map('lmtp', (a) => parseSocketAddress(a, DEFAULTS.lmtp.port, paths.baseDir));
    if (lmtp !== undefined && s.has('maildir')) s.problem('lmtp', 'cannot be combined with maildir');
    const aliases = readAliases(s, users);
    s.finish();
    const out: LocalDomain = { domain: domain ?? '', maildir, users, lmtp };
    if (aliases !== undefined) out.aliases = aliases;
    return out;
  });
}

/**
 * `aliases = { abuse = ["ann", "ben"], root = "ann" }`: each name and each target a mailbox name
 * of this domain; a target must be in `users` when the domain lists them, and must not itself be
 * an alias (one level, so that no chain or loop can be written); a name must not also be a user.
 */
function readAliases(s: Section, users: string[] | undefined): Map<string, string[]> | undefined {
  if (!s.has('aliases')) return undefined;
  const raw = s.raw('aliases');
  const path = s.key('aliases');
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    s.problem('aliases', `must be a table of names to local parts, got ${JSON.stringify(raw)}`);
    return undefined;
  }
  const known = users ? new Set(users.map((u) => u.toLowerCase())) : undefined;
  const names = new Set(Object.keys(raw).map((k) => k.toLowerCase()));
  const out = new Map<string, string[]>();
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const key = `${path}.${name}`;
    if (!isMailboxName(name)) {
      s.problem(
        'aliases',
        `${JSON.stringify(name)} is not a mailbox name (a dot-atom without "/", "!" or "%")`,
      );
      continue;
    }
    const lower = name.toLowerCase();
    if (out.has(lower)) {
      s.problem('aliases', `${JSON.stringify(name)} is given twice (names are compared without case)`);
      continue;
    }
    if (known?.has(lower)) {
      s.problem(
        'aliases',
        `${JSON.stringify(name)} is also in users: a name is a mailbox or an alias, not both`,
      );
      continue;
    }
    const list = typeof value === 'string' ? [value] : value;
    if (!Array.isArray(list) || list.length === 0 || !list.every((t) => typeof t === 'string')) {
      s.problem(
        'aliases',
        `${key} must be a local part or a non-empty list of them, got ${JSON.stringify(value)}`,
      );
      continue;
    }
    const targets: string[] = [];
    for (const t of list as string[]) {
      const tl = t.toLowerCase();
      if (!isMailboxName(t)) s.problem('aliases', `${key}: ${JSON.stringify(t)} is not a mailbox name`);
      else if (names.has(tl))
        s.problem('aliases', `${key}: ${JSON.stringify(t)} is itself an alias (aliases are one level deep)`);
      else if (known !== undefined && !known.has(tl))
        s.problem('aliases', `${key}: ${JSON.stringify(t)} is not in this domain's users`);
      else if (!targets.includes(tl)) targets.push(tl);
    }
    out.set(lower, targets);
  }
  return out;
}

export function readRoutes(list: Section[] | undefined, paths: Paths): Route[] {
  const d = DEFAULTS.route;
  return (list ?? []).map((s) => {
    const domain = s.required('domain', parseRouteDomain);
    const hosts = s.has('host')
      ? s.listOf('host', (h) => parseHostPort(h, { defaultPort: d.port }), {
          allowSingle: true,
          nonEmpty: true,
        })
      : s.required('host', () => []);
    const user = s.has('auth_user') ? s.map('auth_user', parseUserName) : undefined;
    const password = readSecret(s, 'auth_password', 'auth_password_file', paths.baseDir, s.has('auth_user'));
    if (!s.has('auth_user') && (s.has('auth_password') || s.has('auth_password_file'))) {
      s.problem('auth_user', 'required when a password is given');
    }
    const route: Route = {
      domain: domain ?? '',
      hosts: hosts ?? [],
      requireTls: s.bool('require_tls') ?? d.requireTls,
      verifyTls: s.bool('verify_tls') ?? d.verifyTls,
      auth: user !== undefined && password !== undefined ? { user, password } : undefined,
    };
    s.finish();
    return route;
  });
}

export function readDelivery(sec: Section | undefined, empty: () => Section, paths: Paths): DeliveryConfig {
  const d = DEFAULTS.delivery;
  return within(sec, empty, (s) => ({
    concurrencyPerDestination: s.positiveInt('concurrency_per_destination') ?? d.concurrencyPerDestination,
    concurrencyPerHost: s.positiveInt('concurrency_per_host') ?? d.concurrencyPerHost,
    maxConnections: s.positiveInt('max_connections') ?? d.maxConnections,
    connectTimeoutMs: s.duration('connect_timeout') ?? parseDuration(d.connectTimeout),
    greetingTimeoutMs: s.duration('greeting_timeout') ?? parseDuration(d.greetingTimeout),
    connectionReuseTimeMs: s.duration('connection_reuse_time') ?? parseDuration(d.connectionReuseTime),
    mxAddressLimit: mxAddressLimit(s) ?? d.mxAddressLimit,
    mtaSts: s.bool('mta_sts') ?? d.mtaSts,
    dane: s.bool('dane') ?? d.dane,
    tlsCa: readCaFile(s, paths),
  }));
}

/** delivery.tls_ca_file: a PEM bundle of CA certificates, checked here rather than at the first handshake. */
function readCaFile(s: Section, paths: Paths): { file: string; text: string } | undefined {
  const pem = readPem(s, 'tls_ca_file', paths.baseDir);
  if (pem === undefined) return undefined;
  try {
    createSecureContext({ ca: pem.text });
  } catch (e) {
    s.problem(
      'tls_ca_file',
      `${JSON.stringify(pem.file)} holds no usable CA certificate (${(e as Error).message})`,
    );
    return undefined;
  }
  return pem;
}

/** delivery.mx_address_limit; Postfix's 0 ("no limit") is refused with words, not taken for one. */
function mxAddressLimit(s: Section): number | undefined {
  if (s.raw('mx_address_limit') === 0) {
    s.problem(
      'mx_address_limit',
      'expected a positive integer, got 0 (there is no "no limit" value: write the most MX addresses one attempt may try)',
    );
    return undefined;
  }
  return s.positiveInt('mx_address_limit');
}

export function readEtrn(list: Section[] | undefined): EtrnDomain[] {
  const d = DEFAULTS.etrn;
  return (list ?? []).map((s) => {
    const domain = s.required('domain', parseDomain);
    const e: EtrnDomain = {
      domain: domain ?? '',
      host: s.map('host', (h) => parseHostPort(h, { defaultPort: d.port })),
      probeIntervalMs: s.duration('probe_interval') ?? parseDuration(d.probeInterval),
      subdomains: s.bool('subdomains') ?? d.subdomains,
      maxAgeMs: s.duration('max_age'),
    };
    s.finish();
    return e;
  });
}

export function readEtrnLimits(sec: Section | undefined, empty: () => Section): EtrnLimitsConfig {
  const d = DEFAULTS.etrnLimits;
  return within(sec, empty, (s) => ({
    maxConcurrentFlushes: s.positiveInt('max_concurrent_flushes') ?? d.maxConcurrentFlushes,
    requestsPerClient: s.positiveInt('requests_per_client') ?? d.requestsPerClient,
    requestWindowMs: s.duration('request_window') ?? parseDuration(d.requestWindow),
  }));
}

function readAccount(s: Section, paths: Paths): OdmrAccount {
  const user = s.required('user', parseUserName);
  const password = readSecret(s, 'password', 'password_file', paths.baseDir, true);
  const domains = s.has('domains')
    ? s.listOf('domains', parseDomain, { nonEmpty: true })
    : s.required('domains', () => [], 'required (the domains this account collects)');
  const a = {
    user: user ?? '',
    password: password ?? '',
    domains: domains ?? [],
    maxAgeMs: s.duration('max_age'),
  };
  s.finish();
  return a;
}

function readProvider(s: Section, paths: Paths): OdmrProvider {
  const d = DEFAULTS.odmr;
  const host = s.required('host', (h) => parseHostPort(h, { defaultPort: d.providerPort }));
  const user = s.required('user', parseUserName);
  const p: OdmrProvider = {
    host: host ?? { host: '', port: 0 },
    user: user ?? '',
    password: readSecret(s, 'password', 'password_file', paths.baseDir, true) ?? '',
    domains: s.listOf('domains', parseDomain, { nonEmpty: true }),
    intervalMs: s.duration('interval') ?? parseDuration(d.providerInterval),
  };
  s.finish();
  return p;
}

export function readOdmr(sec: Section | undefined, empty: () => Section, paths: Paths): OdmrConfig {
  return within(sec, empty, (s) => ({
    listen: s.listOf('listen', parseListen) ?? DEFAULTS.odmr.listen.map(parseListen),
    accounts: (s.tables('account') ?? []).map((a) => readAccount(a, paths)),
    providers: (s.tables('provider') ?? []).map((p) => readProvider(p, paths)),
    authPerMinute: s.positiveInt('auth_per_minute') ?? DEFAULTS.odmr.authPerMinute,
  }));
}

export function readAdmin(sec: Section | undefined, empty: () => Section, paths: Paths): AdminConfig {
  const d = DEFAULTS.admin;
  return within(sec, empty, (s) => {
    const listen = s.map('listen', parseListen);
    const allowRemote = s.bool('allow_remote') ?? d.allowRemote;
    const token = readSecret(s, 'token', 'token_file', paths.baseDir, false);
    if (listen && !isLoopbackHost(listen.host) && !allowRemote) {
      s.problem(
        'listen',
        `${JSON.stringify(s.raw('listen'))} is not a loopback address (set allow_remote = true)`,
      );
    }
    if (listen && allowRemote && token === undefined && !s.has('token') && !s.has('token_file')) {
      s.problem('token', 'required (or token_file) when allow_remote = true');
    }
    return {
      socket: s.map('socket', (p) => resolve(paths.dataDir, p)) ?? d.socket(paths.dataDir),
      listen,
      token,
      allowRemote,
    };
  });
}

export function readLog(sec: Section | undefined, empty: () => Section): LogConfig {
  const d = DEFAULTS.log;
  return within(sec, empty, (s) => ({
    format:
      (s.string('format', { oneOf: ['json', 'pretty'] }) as LogConfig['format'] | undefined) ?? d.format,
    level:
      (s.string('level', { oneOf: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] }) as
        | LogConfig['level']
        | undefined) ?? d.level,
  }));
}
