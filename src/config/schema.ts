// The resolved configuration: what every other part of logmta reads. Produced only by
// load.ts, which validates the TOML file, applies defaults.ts and resolves paths.
// Invariant: every value here is already checked and in its working unit — durations in
// milliseconds (fields ending in Ms), sizes in bytes, paths absolute, domains lower-case
// without a trailing dot, secrets read from their files. Consumers never re-validate.
// Docs: docs/configuration.md describes each key of the file and its default.

import type { KeyObject } from 'node:crypto';
import type { LogLevel } from '../log.js';
import type { WindowRate } from '../smtp/server/client-rates.js';
import type { Cidr, HostPort } from './net.js';

/** WindowRate: at most `count` events in a window of `periodMs` ("60/1m"). */
export type { Cidr, HostPort, LogLevel, WindowRate };

export type LogFormat = 'json' | 'pretty';

export interface Config {
  /** Name used in the greeting, EHLO, Received: and bounces. */
  hostname: string;
  /** Absolute directory of the daemon's state. */
  dataDir: string;
  /** Absolute path of the file this was read from; undefined when built from defaults only. */
  configFile: string | undefined;
  smtp: SmtpConfig;
  /** STARTTLS material for the SMTP listeners (listen and submission); undefined = no TLS. */
  tls: TlsConfig | undefined;
  /** SMTP AUTH accounts ([[user]]). */
  users: UserAccount[];
  queue: QueueConfig;
  /** Domains delivered on this host ([[local]]): to Maildirs, or over LMTP. */
  local: LocalDomain[];
  /** Mail filters spoken to with the milter protocol ([[milter]]), in file order. */
  milters: MilterConfig[];
  /** Static routes ([[route]]), in file order; domain "*" is the catch-all. */
  routes: Route[];
  delivery: DeliveryConfig;
  /** Domains held for ETRN ([[etrn]]). */
  etrn: EtrnDomain[];
  /** Abuse limits of the ETRN command ([etrn_limits]). */
  etrnLimits: EtrnLimitsConfig;
  odmr: OdmrConfig;
  admin: AdminConfig;
  log: LogConfig;
  /** How every DNS lookup is made ([dns]). */
  dns: DnsConfig;
  /** DKIM signing keys for outgoing mail ([[dkim]]), in file order. */
  dkim: DkimKeyConfig[];
  /** SPF, DKIM and DMARC checks of incoming mail ([auth]). */
  auth: AuthConfig;
  /** DNS blocklists the client address is checked against ([[dnsbl]]), in file order. */
  dnsbl: DnsblConfig[];
  /** The postmaster's access rules ([[access]]), in file order: the first that matches decides. */
  access: AccessRule[];
  /** Membership of a logmta cluster on Redis ([cluster]); undefined = a single node. */
  cluster: ClusterConfig | undefined;
}

export interface SmtpConfig {
  /** Port-25 style listeners: mail for local/held domains, relaying for relay_networks and authenticated users. */
  listen: HostPort[];
  /** Submission listeners: AUTH is required before MAIL. */
  submission: HostPort[];
  /** Implicit-TLS submission listeners (RFC 8314, port 465): TLS from the first byte, then as submission. */
  submissions: HostPort[];
  maxMessageSize: number;
  maxRecipients: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  /** Clients in these blocks may relay without AUTH. */
  relayNetworks: Cidr[];
  /**
   * Domains (exact, lower-case) we accept mail for from anyone and relay (backup MX). Routing
   * ([[route]]) grants nothing: only these, local, ETRN and ODMR domains are open to strangers.
   */
  relayDomains: string[];
  /** Silence (no byte) before a connection is closed. */
  idleTimeoutMs: number;
  /** A whole command line must arrive within this of the server's previous reply. */
  commandTimeoutMs: number;
  /** Each DATA line within this of the previous one; the base of the data-rate allowance. */
  dataLineTimeoutMs: number;
  /** Minimum DATA/BDAT rate in octets per second; 0 = no rate rule. */
  minDataRate: number;
  /** AUTH PLAIN/LOGIN without TLS on non-loopback connections (loopback is always allowed). */
  allowPlainAuthWithoutTls: boolean;
  /** Run the SMTP listeners' sessions in a worker thread of their own (sessions/thread-host.ts). */
  sessionThread: boolean;
  /** AUTH failures from one client address (within 30 minutes) before it is blocked. */
  authMaxFailures: number;
  /** How long a blocked client address gets 421 to AUTH. */
  authBlockTimeMs: number;
  /** Delay before the first failed AUTH's 535; doubles with each further failure. */
  authFailureDelayMs: number;
  /** Cap of that delay (at least authFailureDelayMs). */
  authFailureDelayMaxMs: number;
  /** Connections one client may open per window (Postfix's anvil); undefined = no limit. */
  clientConnectionRate: WindowRate | undefined;
  /** MAIL commands one client may give per window; undefined = no limit. */
  clientMessageRate: WindowRate | undefined;
  /** RCPT commands one client may give per window; undefined = no limit. */
  clientRecipientRate: WindowRate | undefined;
  /** Clients the three rates do not count (default: relay_networks and loopback). */
  clientRateExceptions: Cidr[];
}

/**
 * A sender or recipient as an access rule or a [[user]]'s `addresses` names it, in lower case:
 * the null sender ("<>"), one address ("bad@x.example"), every address with a local part
 * ("postmaster@"), or a domain — with its subdomains ("x.example") or alone ("@x.example").
 */
export type AddressPattern =
  | { kind: 'null' }
  | { kind: 'address'; address: string }
  | { kind: 'local'; local: string }
  | { kind: 'domain'; domain: string; subdomains: boolean };

export type AccessAction = 'reject' | 'defer' | 'permit';

/** One [[access]] table: what it looks at, what it matches, and what a match does. */
export type AccessRule =
  | { on: 'client'; clients: Cidr[]; action: AccessAction; text: string | undefined }
  | {
      on: 'sender' | 'recipient';
      patterns: AddressPattern[];
      action: AccessAction;
      text: string | undefined;
    };

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  /** PEM text of the certificate chain, read at load time. */
  cert: string;
  /** PEM text of the private key, read at load time. */
  key: string;
  /** Lowest TLS version the listeners accept. */
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** OpenSSL cipher list of the listeners; undefined = the built-in forward-secret AEAD list. */
  ciphers: string | undefined;
}

export interface UserAccount {
  name: string;
  password: string;
  /**
   * The MAIL FROM addresses this user may use once authenticated (addresses and "@domain"
   * entries only); undefined = any (Postfix's reject_sender_login_mismatch when set).
   */
  addresses?: AddressPattern[];
}

export interface QueueConfig {
  /** Absolute queue directories, one per disk; at least one. */
  paths: string[];
  /** Delays between attempts; the last one repeats until maxAgeMs. Each > 0. */
  retryMs: number[];
  /** Give up (and bounce) after this long in the queue. */
  maxAgeMs: number;
  /** Send a delay warning (DSN NOTIFY=DELAY) after this long; 0 = never. */
  delayWarningMs: number;
  /** Target size of one log segment file. */
  segmentSize: number;
  /**
   * Message bytes held in memory (data being received, not yet written; just-accepted data kept
   * for its first attempt) above which new SMTP transactions get 452 4.3.1.
   */
  memoryBudget: number;
  /** Bytes kept free in each queue directory for a full disk (0: none). */
  reserve: number;
  /** Reclaimed segment files each queue directory keeps, zeroed, for reuse (0: none). */
  spareSegments: number;
}

export interface LocalDomain {
  domain: string;
  /** Absolute Maildir template containing "{user}" (and optionally "{domain}"). */
  maildir: string;
  /** Known local parts (as written); undefined = any local part is accepted. */
  users: string[] | undefined;
  /** Deliver over LMTP (RFC 2033) to this server instead of the Maildir; undefined = Maildir. */
  lmtp: SocketAddress | undefined;
  /**
   * Local parts (lower case) that stand for other local parts of this domain (lower case), e.g.
   * abuse → [ann, ben]: a recipient named so is replaced by its targets when the message is
   * queued. Optional: absent means none.
   */
  aliases?: ReadonlyMap<string, readonly string[]>;
}

/** A TCP endpoint or a unix-domain socket (absolute path). */
export type SocketAddress = { kind: 'inet'; host: string; port: number } | { kind: 'unix'; path: string };

export interface MilterConfig {
  /** For logs; default the address as written. */
  name: string;
  address: SocketAddress;
  connectTimeoutMs: number;
  /** Reply to CONNECT, HELO, MAIL, RCPT, DATA and the negotiation. */
  commandTimeoutMs: number;
  /** Reply to each header, the body and the end of message. */
  contentTimeoutMs: number;
  /** What an unreachable or failing milter means. */
  defaultAction: 'accept' | 'tempfail' | 'reject';
}

export interface Credentials {
  user: string;
  password: string;
}

export interface Route {
  /** Lower-case domain, or "*" for every domain without a more specific route. */
  domain: string;
  /** Hosts tried in order; port defaults to 25. */
  hosts: HostPort[];
  requireTls: boolean;
  verifyTls: boolean;
  /** AUTH credentials for the next hop; undefined = no AUTH. */
  auth: Credentials | undefined;
}

export interface DeliveryConfig {
  concurrencyPerDestination: number;
  /** Open connections to one host:port over all destinations (tarpits, shared MX hosts). */
  concurrencyPerHost: number;
  maxConnections: number;
  connectTimeoutMs: number;
  /** From the TCP connection to the 220 greeting. */
  greetingTimeoutMs: number;
  /** A connection open this long carries no further message (it is closed when one is done). */
  connectionReuseTimeMs: number;
  /** MX addresses one delivery attempt tries at most (Postfix's smtp_mx_address_limit). */
  mxAddressLimit: number;
  /** Honour receivers' MTA-STS policies (RFC 8461) on MX delivery. */
  mtaSts: boolean;
  /**
   * DANE (RFC 7672) on MX delivery: MX hosts with DNSSEC-validated TLSA records get TLS that must
   * match them. Takes effect only where [dns] dnssec trusts the resolver's validation.
   */
  dane: boolean;
  /** The CAs outbound certificate checks trust (MTA-STS, verify_tls); undefined = the system's. */
  tlsCa: { file: string; text: string } | undefined;
}

export interface EtrnDomain {
  domain: string;
  /** Host probed and delivered to; undefined = MX lookup of the domain. */
  host: HostPort | undefined;
  probeIntervalMs: number;
  /** Whether subdomains of `domain` are held in the same lane. */
  subdomains: boolean;
  /** Per-domain give-up age; undefined = queue.maxAgeMs. */
  maxAgeMs: number | undefined;
}

export interface EtrnLimitsConfig {
  /** Held lanes flushed at the same time, over all ETRN requests and probes (458 beyond). */
  maxConcurrentFlushes: number;
  /** ETRN commands accepted from one client address per requestWindowMs (458 beyond). */
  requestsPerClient: number;
  requestWindowMs: number;
}

export interface OdmrConfig {
  /** ODMR (RFC 2645) provider listeners. */
  listen: HostPort[];
  /** Customers that may collect mail with ATRN. */
  accounts: OdmrAccount[];
  /** Providers this host collects from as an ODMR customer. */
  providers: OdmrProvider[];
  /** AUTH commands accepted from one client address per minute on the ODMR listeners. */
  authPerMinute: number;
}

export interface OdmrAccount {
  user: string;
  password: string;
  /** Lower-case domains held for this account; unique across accounts. */
  domains: string[];
  /** Per-account give-up age; undefined = queue.maxAgeMs. */
  maxAgeMs: number | undefined;
}

export interface OdmrProvider {
  /** Provider address; port defaults to 366. */
  host: HostPort;
  user: string;
  password: string;
  /** Domains to request with ATRN; undefined = every domain of the account (bare ATRN). */
  domains: string[] | undefined;
  intervalMs: number;
}

export interface AdminConfig {
  /** Absolute path of the control socket used by the CLI. */
  socket: string;
  /** Optional HTTP admin listener. */
  listen: HostPort | undefined;
  /** Bearer token required by the HTTP admin; undefined = none (loopback only). */
  token: string | undefined;
  /** Whether `listen` may be a non-loopback address (then a token is required). */
  allowRemote: boolean;
}

export interface LogConfig {
  format: LogFormat;
  level: LogLevel;
}

export interface DnsConfig {
  /** Servers asked in order; empty = the system resolver's nameservers (/etc/resolv.conf). */
  servers: HostPort[];
  /** Bound of one exchange with one server. */
  timeoutMs: number;
  /** Rounds over the server list before a lookup fails. */
  attempts: number;
  /** Cached answers at most; 0 = no cache. */
  cacheSize: number;
  /** Cap of a positive answer's TTL in the cache. */
  maxTtlMs: number;
  /** Cap of a negative (NXDOMAIN/NODATA) answer's TTL in the cache. */
  maxNegativeTtlMs: number;
  /** Whose DNSSEC validation (AD bit) is believed: loopback servers, every server, or none. */
  dnssec: 'loopback' | 'always' | 'never';
}

export interface DkimKeyConfig {
  /** Lower-case signing domain (d=); mail whose From: domain is this one is signed. */
  domain: string;
  /** Selector (s=): the key is published at <selector>._domainkey.<domain>. */
  selector: string;
  /** Also sign mail from subdomains of `domain` (d= stays `domain`, aligned relaxed for DMARC). */
  subdomains: boolean;
  /** Only these AUTH identities get authenticated mail signed; undefined = every one. */
  users: string[] | undefined;
  /** Only relay clients in these blocks get mail signed; undefined = all of relay_networks. */
  networks: Cidr[] | undefined;
  /** Absolute path of the private key (PEM: PKCS#8, or PKCS#1 for RSA). */
  keyFile: string;
  /** The key, read and checked at load time. */
  key: KeyObject;
  algorithm: 'rsa-sha256' | 'ed25519-sha256';
  /** The public key's DNS TXT record text ("v=DKIM1; k=rsa; p=..."), for docs and `logmta` output. */
  record: string;
}

export interface AuthConfig {
  /** Check mail from outside (SPF, DKIM, DMARC) and prepend Authentication-Results. */
  checks: boolean;
  /** authserv-id of our Authentication-Results (default: hostname). */
  authservId: string;
  /** Refuse a DMARC failure under p=reject with 550 5.7.1 (default: annotate only). */
  dmarcReject: boolean;
  /** Answer 451 4.7.x when a DNS error leaves the verdict open (default: annotate only). */
  tempfailOnDnsError: boolean;
  /** Bound of all checks of one message. */
  timeoutMs: number;
}

export interface DnsblConfig {
  /** Lower-case zone, e.g. "zen.spamhaus.org". */
  zone: string;
  /** When the client is checked: before the greeting, or at each RCPT. */
  at: 'connect' | 'rcpt';
  /** A records that mean "listed"; undefined = any 127.0.0.0/8 but 127.255.255.0/24. */
  match: string[] | undefined;
}

/** Where the cluster's Redis is: one server by URL, or a master found through Sentinels. */
export type RedisEndpoint =
  | { kind: 'url'; url: string }
  | { kind: 'sentinel'; sentinels: HostPort[]; master: string; db: number };

/** A GCRA rate ("100/s", "6000/min,max_burst=200"): `count` per `periodMs`, bursts up to `burst`. */
export interface RateSpec {
  count: number;
  periodMs: number;
  burst: number;
}

export interface ClusterConfig {
  /** This node's unique name in the cluster. */
  node: string;
  redis: RedisEndpoint;
  /** Redis AUTH password, read from its file; undefined = none (or in the URL). */
  password: string | undefined;
  /** Where peers reach this node's SMTP; undefined = the first smtp.listen address as bound. */
  advertise: HostPort | undefined;
  /** Where peers reach this node's ODMR listener; undefined = the first odmr.listen address as bound. */
  odmrAdvertise: HostPort | undefined;
  /** Shared secret that authenticates node-to-node SMTP and ODMR sessions (CRAM-MD5). */
  secret: string;
  /** Prefix of every Redis key and channel (several clusters can share one Redis). */
  prefix: string;
  /** How often this node publishes its heartbeat. */
  heartbeatMs: number;
  /** A node whose last heartbeat is older than this is dead. */
  nodeTtlMs: number;
  /** How often mail held here for a domain homed elsewhere is offered to its home again. */
  transferIntervalMs: number;
  /** A Redis command slower than this counts as Redis being unreachable. */
  redisTimeoutMs: number;
  /** Outbound connections to one destination over the whole cluster; 0 = no shared limit. */
  connectionsPerDestination: number;
  /** Messages per destination over the whole cluster (GCRA); undefined = no shared limit. */
  messageRate: RateSpec | undefined;
}
