// Tests of host:port, IP and CIDR parsing, including IPv4-mapped IPv6 membership.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  cidrContains,
  cidrListContains,
  formatHostPort,
  isLoopbackHost,
  parseCidr,
  parseHostPort,
} from './net.js';

describe('parseHostPort', () => {
  test('reads IPv4, bracketed IPv6 and host names', () => {
    assert.deepEqual(parseHostPort('0.0.0.0:25'), { host: '0.0.0.0', port: 25 });
    assert.deepEqual(parseHostPort('[::1]:25'), { host: '::1', port: 25 });
    assert.deepEqual(parseHostPort('127.0.0.1:2525'), { host: '127.0.0.1', port: 2525 });
    assert.deepEqual(parseHostPort('MX.Example.test:587'), { host: 'mx.example.test', port: 587 });
  });
  test('uses the default port only when one is given', () => {
    assert.deepEqual(parseHostPort('mx.example', { defaultPort: 25 }), { host: 'mx.example', port: 25 });
    assert.deepEqual(parseHostPort('2001:db8::1', { defaultPort: 25 }), { host: '2001:db8::1', port: 25 });
    assert.deepEqual(parseHostPort('[2001:db8::1]', { defaultPort: 366 }), {
      host: '2001:db8::1',
      port: 366,
    });
    assert.throws(() => parseHostPort('mx.example'), /expected a "host:port"/);
  });
  test('port 0 only where allowed', () => {
    assert.throws(() => parseHostPort('127.0.0.1:0'), /expected/);
    assert.deepEqual(parseHostPort('127.0.0.1:0', { allowPortZero: true }), { host: '127.0.0.1', port: 0 });
  });
  test('refuses bad ports, bad hosts and host names where an IP is required', () => {
    for (const bad of [
      '127.0.0.1:65536',
      '127.0.0.1:x',
      '127.0.0.1:',
      ':25',
      'a b:25',
      '[::1:25',
      '[zz]:25',
      '[::1]x',
    ]) {
      assert.throws(() => parseHostPort(bad), /expected/, bad);
    }
    assert.throws(() => parseHostPort('localhost:25', { requireIp: true }), /expected an address/);
    assert.throws(() => parseHostPort('300.1.1.1:25', { requireIp: true }), /expected an address/);
  });
  test('formatHostPort brackets IPv6 and round-trips', () => {
    for (const s of ['[::1]:25', '127.0.0.1:2525', 'mx.example:25'])
      assert.equal(formatHostPort(parseHostPort(s)), s);
  });
});

describe('CIDR', () => {
  test('IPv4 blocks contain their addresses and nothing else', () => {
    const c = parseCidr('127.0.0.0/8');
    assert.equal(cidrContains(c, '127.0.0.1'), true);
    assert.equal(cidrContains(c, '127.255.255.255'), true);
    assert.equal(cidrContains(c, '128.0.0.1'), false);
    assert.equal(cidrContains(parseCidr('192.0.2.0/24'), '192.0.3.1'), false);
    assert.equal(cidrContains(parseCidr('10.1.2.3/32'), '10.1.2.3'), true);
    assert.equal(cidrContains(parseCidr('10.1.2.3/32'), '10.1.2.4'), false);
  });
  test('an IPv4 block matches the IPv4-mapped IPv6 form a dual-stack socket reports', () => {
    assert.equal(cidrContains(parseCidr('127.0.0.0/8'), '::ffff:127.0.0.1'), true);
    assert.equal(cidrContains(parseCidr('127.0.0.0/8'), '::ffff:7f00:1'), true);
    assert.equal(cidrContains(parseCidr('::ffff:0:0/96'), '198.51.100.7'), true);
  });
  test('IPv6 blocks, compressed forms and zones', () => {
    assert.equal(cidrContains(parseCidr('::1/128'), '::1'), true);
    assert.equal(cidrContains(parseCidr('::1/128'), '::2'), false);
    assert.equal(cidrContains(parseCidr('::1/128'), '127.0.0.1'), false);
    const c = parseCidr('2001:db8::/32');
    assert.equal(cidrContains(c, '2001:db8:ffff::1'), true);
    assert.equal(cidrContains(c, '2001:db9::1'), false);
    assert.equal(cidrContains(parseCidr('fe80::/10'), 'fe80::1%eth0'), true);
    assert.equal(cidrContains(parseCidr('::/0'), '8.8.8.8'), true);
  });
  test('a bare address is a single-host block; host bits are cleared', () => {
    assert.equal(parseCidr('192.0.2.1').text, '192.0.2.1/32');
    assert.equal(cidrContains(parseCidr('192.0.2.77/24'), '192.0.2.1'), true);
  });
  test('refuses bad blocks', () => {
    for (const bad of ['1.2.3.4/33', '::1/129', '1.2.3/8', 'localhost/8', '1.2.3.4/-1', '1.2.3.4/']) {
      assert.throws(() => parseCidr(bad), /expected a CIDR block/, bad);
    }
  });
  test('a non-address is in no block', () => {
    assert.equal(cidrContains(parseCidr('0.0.0.0/0'), 'example.test'), false);
    assert.equal(cidrListContains([parseCidr('10.0.0.0/8'), parseCidr('::1')], '::1'), true);
    assert.equal(cidrListContains([], '::1'), false);
  });
  test('every spelling of an IPv6 address matches alike', () => {
    const c = parseCidr('2001:db8::2:1/128');
    for (const ip of ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1', '2001:DB8::2:1'])
      assert.equal(cidrContains(c, ip), true, ip);
    assert.equal(cidrContains(parseCidr('1.2.3.4'), '::ffff:1.2.3.4'), true);
    assert.equal(cidrContains(parseCidr('::ffff:1.2.3.4/128'), '1.2.3.4'), true);
  });
  test('the same block list answers the same after many checks (its BlockList is built once)', () => {
    const list = [parseCidr('10.0.0.0/8')];
    for (let i = 0; i < 1000; i++) assert.equal(cidrListContains(list, `10.0.${i & 255}.1`), true);
    assert.equal(cidrListContains(list, '11.0.0.1'), false);
  });
  test('isLoopbackHost', () => {
    for (const h of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1', 'localhost'])
      assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.test', '::2'])
      assert.equal(isLoopbackHost(h), false, h);
  });
});
