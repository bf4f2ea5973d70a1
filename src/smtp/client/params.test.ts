import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { noExtensions, parseEhlo } from './extensions.js';
import { isSafeAddress, mailFromLine, rcptToLine } from './params.js';
import { makeReply } from './reply.js';

describe('parseEhlo', () => {
  test('reads the extensions a peer offers', () => {
    const ext = parseEhlo(
      makeReply(250, [
        'mx.example greets you',
        'PIPELINING',
        'SIZE 35882577',
        '8BITMIME',
        'SMTPUTF8',
        'DSN',
        'CHUNKING',
        'STARTTLS',
        'ENHANCEDSTATUSCODES',
        'AUTH PLAIN login',
        'AUTH=CRAM-MD5',
        'ETRN',
      ]),
    );
    assert.equal(ext.pipelining && ext.eightBitMime && ext.smtputf8 && ext.dsn && ext.chunking, true);
    assert.equal(ext.starttls && ext.enhancedStatusCodes, true);
    assert.equal(ext.size, 35882577);
    assert.deepEqual(ext.auth.sort(), ['CRAM-MD5', 'LOGIN', 'PLAIN']);
    assert.ok(ext.keywords.has('ETRN'));
  });

  test('treats SIZE without or with a bad argument as "no limit"', () => {
    assert.equal(parseEhlo(makeReply(250, ['x', 'SIZE'])).size, 0);
    assert.equal(parseEhlo(makeReply(250, ['x', 'SIZE lots'])).size, 0);
    assert.equal(parseEhlo(makeReply(250, ['x'])).size, undefined);
  });
});

describe('MAIL and RCPT lines', () => {
  const all = parseEhlo(makeReply(250, ['x', 'SIZE 100', '8BITMIME', 'SMTPUTF8', 'DSN']));

  test('ENVID and ORCPT values are xtext-encoded', () => {
    const o = { sender: 'a@b', size: 1, envid: 'a+b=c d' };
    assert.match(mailFromLine(o, all), / ENVID=a\+2Bb\+3Dc\+20d/);
  });

  test('adds only parameters whose extension is offered', () => {
    const o = { sender: 'a@b', size: 42, body8bit: true, smtputf8: true, ret: 'FULL' as const, envid: 'e 1' };
    assert.equal(
      mailFromLine(o, all),
      'MAIL FROM:<a@b> SIZE=42 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=e+201\r\n',
    );
    assert.equal(mailFromLine(o, noExtensions()), 'MAIL FROM:<a@b>\r\n');
    assert.equal(mailFromLine({ sender: '', size: 1 }, noExtensions()), 'MAIL FROM:<>\r\n');
    const r = { address: 'c@d', notify: ['FAILURE' as const, 'DELAY' as const], orcpt: 'rfc822;C=@d' };
    assert.equal(rcptToLine(r, all), 'RCPT TO:<c@d> NOTIFY=FAILURE,DELAY ORCPT=rfc822;C+3D@d\r\n');
    assert.equal(rcptToLine(r, noExtensions()), 'RCPT TO:<c@d>\r\n');
  });

  test('flags addresses that could break the command line', () => {
    assert.equal(isSafeAddress('a@b'), true);
    assert.equal(isSafeAddress(''), true);
    for (const bad of ['a@b>', 'a\r\n@b', '<a@b', 'a\0b']) assert.equal(isSafeAddress(bad), false);
  });
});
