import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LineBuffer, TOO_LONG } from './lines.js';

function lines(lb: LineBuffer): (string | typeof TOO_LONG)[] {
  const out: (string | typeof TOO_LONG)[] = [];
  for (let l = lb.readLine(); l !== null; l = lb.readLine()) out.push(l);
  return out;
}

describe('LineBuffer', () => {
  test('splits CRLF-terminated lines and strips the terminator', () => {
    const lb = new LineBuffer();
    lb.push(Buffer.from('EHLO a\r\nMAIL FROM:<>\r\n'));
    assert.deepEqual(lines(lb), ['EHLO a', 'MAIL FROM:<>']);
    assert.equal(lb.buffered, 0);
  });

  test('a line split across many chunks is reassembled', () => {
    const lb = new LineBuffer();
    for (const ch of 'NOOP hello\r\n') {
      lb.push(Buffer.from(ch));
      if (ch !== '\n') assert.equal(lb.readLine(), null);
    }
    assert.equal(lb.readLine(), 'NOOP hello');
  });

  test('CR and LF split between chunks still form one terminator', () => {
    const lb = new LineBuffer();
    lb.push(Buffer.from('QUIT\r'));
    assert.equal(lb.readLine(), null);
    lb.push(Buffer.from('\n'));
    assert.equal(lb.readLine(), 'QUIT');
  });

  test('bare LF is accepted as a command terminator', () => {
    const lb = new LineBuffer();
    lb.push(Buffer.from('NOOP\nRSET\r\n'));
    assert.deepEqual(lines(lb), ['NOOP', 'RSET']);
  });

  test('a CR inside a line is kept for the parser to reject', () => {
    const lb = new LineBuffer();
    lb.push(Buffer.from('NO\rOP\r\n'));
    assert.deepEqual(lines(lb), ['NO\rOP']);
  });

  test('a 512-octet line including CRLF is accepted, 513 is too long', () => {
    const lb = new LineBuffer(512);
    lb.push(Buffer.from('x'.repeat(510) + '\r\n' + 'y'.repeat(511) + '\r\nNOOP\r\n'));
    assert.deepEqual(lines(lb), ['x'.repeat(510), TOO_LONG, 'NOOP']);
  });

  test('an overlong line arriving in pieces is discarded without being buffered', () => {
    const lb = new LineBuffer(512);
    for (let i = 0; i < 1000; i++) {
      lb.push(Buffer.alloc(1000, 0x61));
      assert.equal(lb.readLine(), null);
      assert.ok(lb.buffered <= 512, `buffered ${lb.buffered}`);
    }
    lb.push(Buffer.from('aaa\r\nQUIT\r\n'));
    assert.deepEqual(lines(lb), [TOO_LONG, 'QUIT']);
  });

  test('byte mode continues exactly where line mode stopped', () => {
    const lb = new LineBuffer();
    lb.push(Buffer.from('DATA\r\nbody'));
    lb.push(Buffer.from(' more'));
    assert.equal(lb.readLine(), 'DATA');
    const a = lb.peek();
    assert.equal(a?.toString(), 'body');
    lb.advance(2);
    assert.equal(lb.peek()?.toString(), 'dy');
    lb.advance(2);
    assert.equal(lb.peek()?.toString(), ' more');
    assert.equal(lb.buffered, 5);
  });

  test('takeAll returns every unconsumed byte including a partial line', () => {
    const lb = new LineBuffer();
    lb.push(Buffer.from('STARTTLS\r\nMAIL FR'));
    lb.push(Buffer.from('OM:<a@b>'));
    assert.equal(lb.readLine(), 'STARTTLS');
    assert.equal(lb.readLine(), null);
    assert.equal(lb.takeAll().toString(), 'MAIL FROM:<a@b>');
    assert.equal(lb.buffered, 0);
    assert.equal(lb.readLine(), null);
  });

  test('UTF-8 in a command line is decoded', () => {
    const lb = new LineBuffer();
    lb.push(Buffer.from('RCPT TO:<jörg@exämple.de>\r\n'));
    assert.equal(lb.readLine(), 'RCPT TO:<jörg@exämple.de>');
  });
});
