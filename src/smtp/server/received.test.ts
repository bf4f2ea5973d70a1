import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rfc5322Date } from '../protocol/date.js';
import { receivedHeader, withProtocol } from './received.js';

describe('Received header', () => {
  test('dates are RFC 5322 in UTC', () => {
    assert.equal(rfc5322Date(Date.UTC(2024, 0, 2, 3, 4, 5)), 'Tue, 02 Jan 2024 03:04:05 +0000');
    assert.equal(rfc5322Date(Date.UTC(2024, 0, 2, 3, 4, 5, 999)), 'Tue, 02 Jan 2024 03:04:05 +0000');
  });
  test('with-protocol follows RFC 3848 and RFC 6531', () => {
    assert.equal(withProtocol(false, false, false, false), 'SMTP');
    assert.equal(withProtocol(true, false, false, false), 'ESMTP');
    assert.equal(withProtocol(true, true, false, false), 'ESMTPS');
    assert.equal(withProtocol(true, false, true, false), 'ESMTPA');
    assert.equal(withProtocol(true, true, true, false), 'ESMTPSA');
    assert.equal(withProtocol(true, true, true, true), 'UTF8SMTPSA');
  });
  test('the header names client, TLS, auth, our host, id and the single recipient', () => {
    const h = receivedHeader({
      hostname: 'mx.example',
      client: {
        ip: '192.0.2.1',
        port: 1,
        helo: 'client.example',
        tls: { protocol: 'TLSv1.3', cipher: 'X' },
        auth: 'bob',
      },
      esmtp: true,
      smtputf8: false,
      id: 'Q1',
      recipient: 'a@b.c',
      date: Date.UTC(2024, 0, 2, 3, 4, 5),
    });
    assert.equal(
      h,
      'Received: from client.example ([192.0.2.1])\r\n' +
        '\t(using TLSv1.3 with cipher X)\r\n' +
        '\t(authenticated sender: bob)\r\n' +
        '\tby mx.example (logmta) with ESMTPSA id Q1\r\n' +
        '\tfor <a@b.c>; Tue, 02 Jan 2024 03:04:05 +0000\r\n',
    );
  });
  test('IPv6 clients get an IPv6: literal and hostile HELO text is neutralised', () => {
    const h = receivedHeader({
      hostname: 'mx',
      client: { ip: '::1', port: 1, helo: 'a (b) \\c' },
      esmtp: false,
      smtputf8: false,
      id: 'Q',
      date: 0,
    });
    assert.match(h, /^Received: from a\?\?b\?\?\?c \(\[IPv6:::1\]\)\r\n\tby mx \(logmta\) with SMTP id Q; /);
  });
  test('a non-ASCII HELO name stays UTF-8 only in an SMTPUTF8 transaction; otherwise the header is ASCII', () => {
    const base = { hostname: 'mx', esmtp: true, id: 'Q', date: 0 };
    const client = { ip: '192.0.2.1', port: 1, helo: 'müller.test', auth: 'jürgen' };
    const plain = receivedHeader({ ...base, client, smtputf8: false });
    assert.match(
      plain,
      /^Received: from m\?ller\.test \(\[192\.0\.2\.1\]\)\r\n\t\(authenticated sender: j\?rgen\)\r\n/,
    );
    assert.doesNotMatch(plain, /[^\x00-\x7f]/);
    const utf8 = receivedHeader({ ...base, client, smtputf8: true });
    assert.match(utf8, /^Received: from müller\.test \(/);
  });
});
