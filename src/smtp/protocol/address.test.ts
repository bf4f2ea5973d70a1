import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isSmtpDomain } from '../../util/domain.js';
import { checkMailbox, isValidAddressLiteral, parsePath, withAsciiDomain } from './address.js';

describe('checkMailbox', () => {
  test('accepts dot-strings, quoted local parts and address literals', () => {
    for (const m of [
      'user@example.com',
      'first.last+tag@sub.example.co.uk',
      "o'neil!#$%&*/=?^_`{|}~@x.y",
      '"john doe"@example.com',
      '"a\\"b@c"@example.com',
      'u@[192.0.2.1]',
      'u@[IPv6:2001:db8::1]',
      'u@localhost',
    ]) {
      assert.equal(checkMailbox(m), 'ok', m);
    }
  });
  test('rejects bad dot-strings, domains and literals', () => {
    for (const m of [
      'noat',
      '@example.com',
      'user@',
      '.user@x.com',
      'us..er@x.com',
      'user.@x.com',
      'us er@x.com',
      'user@-x.com',
      'user@x..com',
      'user@x_y.com',
      'u@[999.0.0.1]',
      'u@[IPv6:zz]',
      '"unterminated@x.com',
    ]) {
      assert.equal(checkMailbox(m), 'syntax', m);
    }
  });
  test('non-ASCII needs SMTPUTF8 and is accepted with it', () => {
    assert.equal(checkMailbox('jörg@exämple.de'), 'needsUtf8');
    assert.equal(checkMailbox('jörg@exämple.de', true), 'ok');
  });
  test('a local part over 64 octets is too long', () => {
    assert.equal(checkMailbox('a'.repeat(64) + '@x.com'), 'ok');
    assert.equal(checkMailbox('a'.repeat(65) + '@x.com'), 'tooLong');
  });
});

describe('isSmtpDomain / isValidAddressLiteral', () => {
  test('labels are LDH, not starting or ending with a hyphen, at most 63 octets', () => {
    assert.equal(isSmtpDomain('a-b.example'), true);
    assert.equal(isSmtpDomain('a'.repeat(63) + '.x'), true);
    assert.equal(isSmtpDomain('a'.repeat(64) + '.x'), false);
    assert.equal(isSmtpDomain('ab-.x'), false);
  });
  test('general address literals need a tag', () => {
    assert.equal(isValidAddressLiteral('[x-tag:content]'), true);
    assert.equal(isValidAddressLiteral('[content]'), false);
  });
});

describe('parsePath', () => {
  test('returns the address and the index after ">"', () => {
    const r = parsePath('FROM:<a@b.c> SIZE=1', 5);
    assert.deepEqual(r, { ok: true, path: { address: 'a@b.c' }, end: 12 });
  });
  test('the null path is allowed only when asked for', () => {
    assert.deepEqual(parsePath('<>', 0, { allowNull: true }), { ok: true, path: { address: '' }, end: 2 });
    assert.deepEqual(parsePath('<>', 0), { ok: false, error: 'null' });
  });
  test('source routes are stripped and reported', () => {
    const r = parsePath('<@a.example,@[192.0.2.1]:user@d.example>', 0);
    assert.deepEqual(r, {
      ok: true,
      path: { address: 'user@d.example', sourceRoute: ['a.example', '[192.0.2.1]'] },
      end: 40,
    });
  });
  test('a malformed source route is a syntax error', () => {
    assert.deepEqual(parsePath('<@a.example,b.example:user@d>', 0), { ok: false, error: 'syntax' });
  });
  test('a ">" inside a quoted local part does not end the path', () => {
    const r = parsePath('<"a>b"@x.com>', 0);
    assert.ok(r.ok && r.path.address === '"a>b"@x.com');
  });
  test('Postmaster without a domain is allowed only when asked for', () => {
    assert.ok(parsePath('<Postmaster>', 0, { allowPostmaster: true }).ok);
    assert.equal(parsePath('<Postmaster>', 0).ok, false);
  });
  test('missing brackets and spaces inside the path are syntax errors', () => {
    for (const s of ['a@b.c', '<a@b.c', '<a @b.c>', '<<a@b.c>>']) {
      assert.equal(parsePath(s, 0).ok, false, s);
    }
  });
  test('a path over 256 octets is too long', () => {
    const long = `<${'a'.repeat(60)}@${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.${'e'.repeat(20)}>`;
    assert.deepEqual(parsePath(long, 0), { ok: false, error: 'tooLong' });
  });
});

describe('withAsciiDomain', () => {
  test('a U-label domain becomes its A-labels; the local part, ASCII domains and literals stay', () => {
    assert.equal(withAsciiDomain('Hans@M\u00fcller.test'), 'Hans@xn--mller-kva.test');
    assert.equal(withAsciiDomain('j\u00fcrgen@example.test'), 'j\u00fcrgen@example.test');
    assert.equal(withAsciiDomain('"a@b"@b\u00e4ckup.test'), '"a@b"@xn--bckup-gra.test');
    assert.equal(withAsciiDomain('u@[127.0.0.1]'), 'u@[127.0.0.1]');
    assert.equal(withAsciiDomain(''), '');
  });
  test('a look-alike stays another domain, and an invalid IDN is refused', () => {
    assert.notEqual(withAsciiDomain('u@b\u0430ckup.test'), 'u@xn--bckup-gra.test');
    assert.equal(withAsciiDomain('u@xn--zz.t\u00e9st'), undefined);
  });
});
