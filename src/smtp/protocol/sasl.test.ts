import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  cramChallenge,
  cramDigest,
  cramVerify,
  decodeBase64Line,
  parseCramResponse,
  parsePlain,
} from './sasl.js';

describe('SASL helpers', () => {
  test('base64 lines decode strictly; "=" is the empty response', () => {
    assert.equal(decodeBase64Line('dXNlcg==')?.toString(), 'user');
    assert.equal(decodeBase64Line('=')?.length, 0);
    for (const s of ['dXNlcg', 'dXN lcg==', '*', 'dXNlcg===']) assert.equal(decodeBase64Line(s), null, s);
  });
  test('PLAIN splits authzid, username and password', () => {
    assert.deepEqual(parsePlain(Buffer.from('\0user\0pass')), {
      authzid: '',
      username: 'user',
      password: 'pass',
    });
    assert.deepEqual(parsePlain(Buffer.from('admin\0user\0p')), {
      authzid: 'admin',
      username: 'user',
      password: 'p',
    });
    assert.equal(parsePlain(Buffer.from('user\0pass')), null);
    assert.equal(parsePlain(Buffer.from('\0\0pass')), null);
    assert.equal(parsePlain(Buffer.from('\0u\0p\0x')), null);
  });
  test('CRAM-MD5 matches the RFC 2195 example', () => {
    const challenge = '<1896.697170952@postoffice.reston.mci.net>';
    assert.equal(cramDigest('tanstaaftanstaaf', challenge), 'b913a602c7eda7a495b4e6e7334d3890');
    const r = parseCramResponse(Buffer.from('tim b913a602c7eda7a495b4e6e7334d3890'));
    assert.deepEqual(r, { username: 'tim', digest: 'b913a602c7eda7a495b4e6e7334d3890' });
    assert.equal(cramVerify('tanstaaftanstaaf', challenge, r?.digest ?? ''), true);
    assert.equal(cramVerify('wrong', challenge, r?.digest ?? ''), false);
  });
  test('CRAM-MD5 challenges are unique msg-ids', () => {
    const a = cramChallenge('mx.example', 1_000_000);
    assert.match(a, /^<[0-9a-f]+\.1000@mx\.example>$/);
    assert.notEqual(a, cramChallenge('mx.example', 1_000_000));
  });
  test('malformed CRAM responses are rejected', () => {
    assert.equal(parseCramResponse(Buffer.from('tim')), null);
    assert.equal(parseCramResponse(Buffer.from('tim xyz')), null);
  });
});
