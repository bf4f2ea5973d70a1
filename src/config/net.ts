// Pure parsers for network notation in the configuration: "host:port" addresses, IP
// addresses and CIDR blocks, plus the membership test used for relay_networks.
// Invariant: membership is decided by node:net's BlockList, which treats IPv4 a.b.c.d and the
// IPv4-mapped IPv6 address ::ffff:a.b.c.d as the same address both ways, so "127.0.0.0/8"
// matches a socket's "::ffff:127.0.0.1" and an IPv6 block "::ffff:0:0/96" matches every IPv4
// address. A zone suffix ("fe80::1%eth0") is ignored. One BlockList is built per block list
// (cached by identity) — about 5 µs per check against the 8-10 µs of the hand-written 128-bit
// comparison it replaced (node dist, 500,000 checks of a 3-block list).
// Failure: a MtaError code 'CONFIG_VALUE' (permanent) naming what was expected.

import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net';
import { valueError } from './units.js';
import { isHostName } from '../util/domain.js';

export interface HostPort {
  /** Host name or IP address, without brackets ("::1", not "[::1]"). */
  host: string;
  port: number;
}

export interface Cidr {
  /** The block as written after normalisation, e.g. "127.0.0.0/8" or "2001:db8::/32". */
  text: string;
  family: 4 | 6;
  /** The address part as written (host bits may be set; they are ignored). */
  address: string;
  /** Prefix length in the block's own family (an IPv4 /8 is 8). */
  prefix: number;
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
  return { text: `${addr}/${prefix}`, family, address: addr, prefix };
}

const blockLists = new WeakMap<readonly Cidr[], BlockList>();

function blockListOf(list: readonly Cidr[]): BlockList {
  let b = blockLists.get(list);
  if (b === undefined) {
    b = new BlockList();
    for (const c of list) b.addSubnet(c.address, c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
    blockLists.set(list, b);
  }
  return b;
}

/** Whether `ip` lies in any of the blocks; a string that is not an IP is in no block. */
export function cidrListContains(list: readonly Cidr[], ip: string): boolean {
  if (list.length === 0) return false;
  const bare = ip.includes('%') ? ip.slice(0, ip.indexOf('%')) : ip;
  if (isIPv4(bare)) return blockListOf(list).check(bare, 'ipv4');
  if (isIPv6(bare)) return blockListOf(list).check(bare, 'ipv6');
  return false;
}

const IPV4_MAPPED = blockListOf([parseCidr('::ffff:0:0/96')]);

/**
 * The prefix length, counted as IPv4, of the IPv4 addresses `c` matches — an IPv4 block's own
 * prefix; for an IPv6 block over the IPv4-mapped range ::ffff:0:0/96, what it holds of that
 * range ("::/16" and "::ffff:0:0/96" hold all of it: 0; "::ffff:127.0.0.0/104": 8) — or
 * undefined when it matches no IPv4 address. How wide a relay_networks block really is.
 */
export function ipv4PrefixOf(c: Cidr): number | undefined {
  if (c.family === 4) return c.prefix;
  if (c.prefix <= 96) return blockListOf([c]).check('::ffff:0.0.0.0', 'ipv6') ? 0 : undefined;
  return IPV4_MAPPED.check(c.address, 'ipv6') ? c.prefix - 96 : undefined;
}

const single = new WeakMap<Cidr, readonly Cidr[]>();

/** Whether the IP address `ip` lies in `cidr`; a string that is not an IP is in no block. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  let list = single.get(cidr);
  if (list === undefined) {
    list = [cidr];
    single.set(cidr, list);
  }
  return cidrListContains(list, ip);
}

/** A DNS host name (the grammar lives in util/domain.ts, shared with the queue). */
export { isHostName };

const LOOPBACK = [parseCidr('127.0.0.0/8'), parseCidr('::1/128')];

/** Whether a host is a loopback address (127/8, ::1, ::ffff:127/104) or "localhost". */
export function isLoopbackHost(host: string): boolean {
  return host.toLowerCase() === 'localhost' || cidrListContains(LOOPBACK, host);
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
