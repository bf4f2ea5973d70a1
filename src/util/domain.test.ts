import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addressKey,
  domainOf,
  isAtOrBelow,
  isHostName,
  isMailDomain,
  isSmtpDomain,
  localPartOf,
  normalizeDomain,
} from './domain.js';

describe('domain names', () => {
  test('one label rule: letters, digits, inner hyphens, 1 to 63 characters', () => {
    const l63 = 'a'.repeat(63);
    for (const d of ['a-b.example', `${l63}.x`, 'x1.y2']) {
      assert.ok(isHostName(d), d);
      assert.ok(isSmtpDomain(d), d);
    }
    for (const d of [`${l63}a.x`, 'ab-.x', '-a.x', 'a..b', '', 'a_b.x']) {
      assert.ok(!isSmtpDomain(d), d);
      assert.ok(!isHostName(d), d);
    }
  });

  test('host names may have underscore labels and a trailing dot; SMTP domains may not', () => {
    assert.ok(isHostName('_dmarc.example.org.'));
    assert.ok(!isSmtpDomain('_dmarc.example.org'));
    assert.ok(!isSmtpDomain('example.org.'));
  });

  test('U-labels only under SMTPUTF8, and the 255-octet limit counts octets', () => {
    assert.ok(!isSmtpDomain('bücher.example'));
    assert.ok(isSmtpDomain('bücher.example', true));
    const long = Array.from({ length: 5 }, () => 'ü'.repeat(30)).join('.'); // 149 characters, 299 octets
    assert.ok(!isSmtpDomain(long, true));
  });

  test('a mail domain is a host name in normal form', () => {
    assert.equal(normalizeDomain(' Example.ORG. '), 'example.org');
    assert.ok(isMailDomain('example.org'));
    assert.ok(!isMailDomain('Example.org'));
    assert.ok(!isMailDomain('_x.example'));
    assert.equal(normalizeDomain('a b'), undefined);
  });

  test('the domain of an address is after the last "@", lower case, without a trailing dot', () => {
    assert.equal(domainOf('"a@b"@Example.ORG.'), 'example.org');
    assert.equal(domainOf('postmaster'), '');
    assert.equal(addressKey('Bob@Example.ORG.'), 'Bob@example.org');
    assert.equal(addressKey('postmaster'), 'postmaster');
    assert.equal(localPartOf('"a@b"@x.test'), '"a@b"');
    assert.equal(localPartOf('postmaster'), 'postmaster');
  });

  test('at or below: the domain itself or a subdomain, never a suffix that is not a label', () => {
    assert.ok(isAtOrBelow('example.org', 'example.org'));
    assert.ok(isAtOrBelow('a.example.org', 'example.org'));
    assert.ok(!isAtOrBelow('badexample.org', 'example.org'));
  });
});
