// Pure parsers for network notation in the configuration: "host:port" addresses, IP
// addresses and CIDR blocks, plus the membership test used for relay_networks.
// Invariant: every address is compared as a 128-bit number; IPv4 a.b.c.d is held as the
// IPv4-mapped IPv6 address ::ffff:a.b.c.d, so "127.0.0.0/8" matches a socket's
// "::ffff:127.0.0.1" and an IPv6 block "::ffff:0:0/96" matches every IPv4 address.
// Failure: a MtaError code 'CONFIG_VALUE' (permanent) naming what was expected.

import { isIP, isIPv4, isIPv6 } from 'node:net';
import { valueError } from './units.js';

export interface HostPort {
  /** Host name or IP address, without brackets ("::1", not "[::1]"). */
  host: string;
  port: number;
}

export interface Cidr {
  /** The block as written after normalisation, e.g. "127.0.0.0/8" or "2001:db8::/32". */
  text: string;
  family: 4 | 6;
  /** Network address as a 128-bit number (IPv4 mapped into ::ffff:0:0/96). */
  network: bigint;
  /** Prefix length in the 128-bit space (an IPv4 /8 is 104 here). */
  prefix128: number;
}

const MAPPED_V4 = 0xffffn << 32n;
const ALL_ONES_128 = (1n << 128n) - 1n;

function v4ToBigInt(s: string): bigint {
  let n = 0n;
  for (const octet of s.split('.')) n = (n << 8n) | BigInt(Number(octet));
  return n;
}

function v6ToBigInt(s: string): bigint {
  let text = s;
  // An embedded dotted IPv4 tail ("::ffff:1.2.3.4") stands for the last two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = v4ToBigInt(tail);
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = '', rest] = text.split('::') as [string, string | undefined];
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = rest === undefined ? 0 : 8 - headGroups.length - restGroups.length;
  let n = 0n;
  for (const g of [...headGroups, ...new Array<string>(zeros).fill('0'), ...restGroups]) {
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  return n;
}

/**
 * An IP address as a 128-bit number (IPv4 mapped to ::ffff:a.b.c.d), or undefined when the
 * text is not an IP address. A zone suffix ("fe80::1%eth0") is ignored.
 */
export function ipToBigInt(ip: string): bigint | undefined {
  const bare = ip.includes('%') ? ip.slice(0, ip.indexOf('%')) : ip;
  if (isIPv4(bare)) return MAPPED_V4 | v4ToBigInt(bare);
  if (isIPv6(bare)) return v6ToBigInt(bare);
  return undefined;
}

/** Parses "a.b.c.d/n" or "v6::/n" (a bare address means a single host). */
export function parseCidr(input: string): Cidr {
  const expected = 'a CIDR block like "127.0.0.0/8" or "::1/128"';
  const s = input.trim();
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const family = isIP(addr);
  if (family !== 4 && family !== 6) throw valueError(expected, input);
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) throw valueError(expected, input);
    prefix = Number(p);
  }
  const prefix128 = family === 4 ? prefix + 96 : prefix;
  const mask = prefix128 === 0 ? 0n : (ALL_ONES_128 << BigInt(128 - prefix128)) & ALL_ONES_128;
  const network = ipToBigInt(addr)! & mask;
  return { text: `${addr}/${prefix}`, family, network, prefix128 };
}

/** Whether the IP address `ip` lies in `cidr`; a string that is not an IP is in no block. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  const n = ipToBigInt(ip);
  if (n === undefined) return false;
  const shift = BigInt(128 - cidr.prefix128);
  return n >> shift === cidr.network >> shift;
}

/** Whether `ip` lies in any of the blocks. */
export function cidrListContains(list: readonly Cidr[], ip: string): boolean {
  for (const c of list) if (cidrContains(c, ip)) return true;
  return false;
}

const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

/** A DNS host name: dot-separated labels of letters, digits and inner hyphens; at most 253. */
export function isHostName(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((l) => LABEL.test(l) || l === '_' || /^_[a-z0-9-]+$/i.test(l));
}

/** Whether a host is a loopback address (127/8, ::1, ::ffff:127/104) or "localhost". */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const n = ipToBigInt(host);
  if (n === undefined) return false;
  return n === 1n || n >> 24n === (MAPPED_V4 | (127n << 24n)) >> 24n;
}

export interface HostPortOptions {
  /** Port used when none is written; without it a port is required. */
  defaultPort?: number;
  /** Accept port 0 (bind to an ephemeral port); listen addresses only. */
  allowPortZero?: boolean;
  /** Refuse host names: the host must be an IP address literal (listen addresses). */
  requireIp?: boolean;
}

/**
 * Parses "host:port", "[v6]:port", "v4:port", and (with a default port) "host", "v6".
 * Host names are validated as DNS names; IPv6 with a port must be bracketed.
 */
export function parseHostPort(input: string, opts: HostPortOptions = {}): HostPort {
  const expected =
    (opts.requireIp ? 'an address like "127.0.0.1:25" or "[::1]:25"' : 'a "host:port" like "mx.example:25"') +
    (opts.defaultPort === undefined ? '' : ` (port optional, default ${opts.defaultPort})`);
  const s = input.trim();
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw valueError(expected, input);
    host = s.slice(1, close);
    const after = s.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw valueError(expected, input);
      portText = after.slice(1);
    }
    if (!isIPv6(host)) throw valueError(expected, input);
  } else if (isIPv6(s)) {
    host = s; // a bare IPv6 address: no port can follow without brackets
  } else {
    const colon = s.lastIndexOf(':');
    if (colon >= 0) {
      host = s.slice(0, colon);
      portText = s.slice(colon + 1);
    } else host = s;
    if (!isIPv4(host) && (opts.requireIp || !isHostName(host))) throw valueError(expected, input);
  }
  let port: number;
  if (portText === undefined) {
    if (opts.defaultPort === undefined) throw valueError(expected, input);
    port = opts.defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) throw valueError(expected, input);
    port = Number(portText);
    if (port > 65535 || (port === 0 && !opts.allowPortZero)) throw valueError(expected, input);
  }
  if (opts.requireIp && isIP(host) === 0) throw valueError(expected, input);
  return { host: host.toLowerCase(), port };
}

/** "host:port" with IPv6 hosts bracketed: the inverse of parseHostPort. */
export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
