import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { paramWords, parseMailArgs, parseRcptArgs } from './params.js';

function code(r: { ok: boolean; reply?: { code: number; enhanced?: string } }): string {
  return r.ok ? 'ok' : `${r.reply?.code} ${r.reply?.enhanced}`;
}

describe('parseMailArgs', () => {
  test('parses every supported MAIL parameter', () => {
    const r = parseMailArgs(
      'FROM:<a@b.c> SIZE=1000 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=abc+2Bdef AUTH=u+40x',
    );
    assert.deepEqual(r, {
      ok: true,
      path: { address: 'a@b.c' },
      params: { size: 1000, body: '8BITMIME', smtputf8: true, ret: 'HDRS', envid: 'abc+def', auth: 'u@x' },
      rest: ' SIZE=1000 BODY=8bitmime SMTPUTF8 RET=hdrs ENVID=abc+2Bdef AUTH=u+40x',
    });
    assert.ok(r.ok);
    assert.deepEqual(paramWords(r.rest).slice(0, 2), ['SIZE=1000', 'BODY=8bitmime']);
  });
  test('the null sender and AUTH=<> are accepted', () => {
    const r = parseMailArgs('FROM:<> AUTH=<>');
    assert.deepEqual(r, { ok: true, path: { address: '' }, params: { auth: '' }, rest: ' AUTH=<>' });
  });
  test('a space after FROM: is tolerated; the keyword is case-insensitive', () => {
    assert.equal(code(parseMailArgs('from: <a@b.c>')), 'ok');
  });
  test('unknown parameters get 555 5.5.4', () => {
    assert.equal(code(parseMailArgs('FROM:<a@b.c> XFOO=1')), '555 5.5.4');
  });
  test('malformed, duplicate or out-of-range values get 501 5.5.4', () => {
    for (const a of [
      'FROM:<a@b.c> SIZE=abc',
      'FROM:<a@b.c> SIZE',
      'FROM:<a@b.c> SIZE=1 SIZE=2',
      'FROM:<a@b.c> BODY=9BIT',
      'FROM:<a@b.c> RET=ALL',
      'FROM:<a@b.c> ENVID=a+zz',
      'FROM:<a@b.c> SMTPUTF8=yes',
      'FROM:<a@b.c> =x',
      'FROM:<a@b.c>SIZE=1',
      'TO:<a@b.c>',
    ]) {
      assert.equal(code(parseMailArgs(a)), '501 5.5.4', a);
    }
  });
  test('a bad sender address gets 501 5.1.7', () => {
    assert.equal(code(parseMailArgs('FROM:<a..b@c>')), '501 5.1.7');
    assert.equal(code(parseMailArgs('FROM:a@b.c')), '501 5.1.7');
  });
  test('a non-ASCII sender needs SMTPUTF8 (553 5.6.7)', () => {
    assert.equal(code(parseMailArgs('FROM:<jörg@x.de>')), '553 5.6.7');
    assert.equal(code(parseMailArgs('FROM:<jörg@x.de> SMTPUTF8')), 'ok');
  });
  test('source routes are stripped', () => {
    const r = parseMailArgs('FROM:<@relay.example:a@b.c>');
    assert.ok(r.ok);
    assert.deepEqual(r.path, { address: 'a@b.c', sourceRoute: ['relay.example'] });
  });
});

describe('parseRcptArgs', () => {
  test('parses NOTIFY and ORCPT', () => {
    const r = parseRcptArgs('TO:<a@b.c> NOTIFY=success,delay ORCPT=rfc822;x+2By@b.c', false);
    assert.deepEqual(r, {
      ok: true,
      path: { address: 'a@b.c' },
      params: { notify: ['SUCCESS', 'DELAY'], orcpt: { type: 'rfc822', address: 'x+y@b.c' } },
      rest: ' NOTIFY=success,delay ORCPT=rfc822;x+2By@b.c',
    });
  });
  test('NOTIFY=NEVER is ["NEVER"] and cannot be combined', () => {
    const r = parseRcptArgs('TO:<a@b.c> NOTIFY=NEVER', false);
    assert.deepEqual(r.ok && r.params.notify, ['NEVER']);
    assert.equal(code(parseRcptArgs('TO:<a@b.c> NOTIFY=NEVER,DELAY', false)), '501 5.5.4');
    assert.equal(code(parseRcptArgs('TO:<a@b.c> NOTIFY=DELAY,DELAY', false)), '501 5.5.4');
  });
  test('bad ORCPT values are rejected', () => {
    for (const v of ['rfc822', ';a@b', 'rfc822;', 'rf c;a']) {
      assert.equal(code(parseRcptArgs(`TO:<a@b.c> ORCPT=${v}`, false)).slice(0, 3), '501', v);
    }
  });
  test('the null recipient and bad addresses get 501 5.1.3', () => {
    assert.equal(code(parseRcptArgs('TO:<>', false)), '501 5.1.3');
    assert.equal(code(parseRcptArgs('TO:<a b@c>', false)), '501 5.1.3');
  });
  test('<Postmaster> is a valid recipient', () => {
    assert.equal(code(parseRcptArgs('TO:<Postmaster>', false)), 'ok');
  });
  test('non-ASCII recipients depend on the transaction being SMTPUTF8', () => {
    assert.equal(code(parseRcptArgs('TO:<jörg@x.de>', false)), '553 5.6.7');
    assert.equal(code(parseRcptArgs('TO:<jörg@x.de>', true)), 'ok');
  });
  test('unknown RCPT parameters get 555', () => {
    assert.equal(code(parseRcptArgs('TO:<a@b.c> SIZE=1', false)), '555 5.5.4');
  });
});
