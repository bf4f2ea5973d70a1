import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MtaError } from '../errors.js';
import { errorBody, LineSplitter, parseRequest } from './protocol.js';

describe('control protocol framing', () => {
  test('lines split across chunks are joined; CRLF and LF both end a line', () => {
    const s = new LineSplitter(100);
    assert.deepEqual(s.feed(Buffer.from('{"a":')), []);
    assert.deepEqual(s.feed(Buffer.from('1}\r\n{"b"')), ['{"a":1}']);
    assert.deepEqual(s.feed(Buffer.from(':2}\nx\n')), ['{"b":2}', 'x']);
  });

  test('a line over the limit is an error, even before its end arrives', () => {
    const s = new LineSplitter(8);
    assert.throws(
      () => s.feed(Buffer.from('0123456789')),
      (e: unknown) => e instanceof MtaError && e.code === 'ADMIN_LINE_TOO_LONG',
    );
  });

  test('requests need an integer id, an op and object args', () => {
    assert.deepEqual(parseRequest('{"id":3,"op":"list","args":{"lane":"hold"}}'), {
      id: 3,
      op: 'list',
      args: { lane: 'hold' },
    });
    for (const bad of [
      'nope',
      '[]',
      '{"op":"x"}',
      '{"id":1}',
      '{"id":1.5,"op":"x"}',
      '{"id":1,"op":"x","args":[1]}',
    ]) {
      assert.throws(
        () => parseRequest(bad),
        (e: unknown) => e instanceof MtaError && e.code === 'ADMIN_BAD_REQUEST',
        bad,
      );
    }
  });

  test('error bodies keep code, kind and SMTP status', () => {
    const e = new MtaError('X', 'transient', 'later', { smtp: { code: 451, enhanced: '4.3.0' } });
    assert.deepEqual(errorBody(e), {
      code: 'X',
      message: 'later',
      kind: 'transient',
      smtp: { code: 451, enhanced: '4.3.0' },
    });
    assert.equal(errorBody(new Error('boom')).code, 'ADMIN_INTERNAL');
  });
});
