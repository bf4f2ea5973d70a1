import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { DotStuffer, dotStuff } from './dotstuff.js';

const wire = (chunks: string[]) =>
  Buffer.concat(dotStuff(chunks.map((c) => Buffer.from(c, 'latin1')))).toString('latin1');

/** Receiver's view (RFC 5321 §4.5.2), lines split on CRLF only: unstuff until the lone ".". */
function receive(s: string): string | undefined {
  const end = s.indexOf('\r\n.\r\n');
  const body = s.startsWith('.\r\n') ? '' : end < 0 ? undefined : s.slice(0, end + 2);
  if (body === undefined) return undefined;
  return body
    .split('\r\n')
    .map((l) => (l.startsWith('.') ? l.slice(1) : l))
    .join('\r\n');
}

describe('dotStuff', () => {
  test('doubles a leading dot on every line and appends the terminator', () => {
    assert.equal(wire(['.a\r\nb\r\n.\r\n']), '..a\r\nb\r\n..\r\n.\r\n');
  });

  test('stuffs a dot at a chunk boundary', () => {
    assert.equal(wire(['a\r\n', '.b\r\n']), 'a\r\n..b\r\n.\r\n');
    assert.equal(wire(['a\r', '\n', '.', 'b\r\n']), 'a\r\n..b\r\n.\r\n');
  });

  test('adds CRLF before the terminator when the data does not end with one', () => {
    assert.equal(wire(['abc']), 'abc\r\n.\r\n');
    assert.equal(wire(['abc\r']), 'abc\r\r\n.\r\n');
    assert.equal(wire(['abc\n']), 'abc\n\r\n.\r\n');
    assert.equal(wire([]), '.\r\n');
  });

  test('stuffs after a bare LF so "\\n.\\r\\n" cannot end the data early', () => {
    assert.equal(wire(['a\n.\r\nMAIL FROM:<x>\r\n']), 'a\n..\r\nMAIL FROM:<x>\r\n.\r\n');
  });

  test('does not copy message bytes: output buffers share the input memory', () => {
    const input = Buffer.from('x'.repeat(1000) + '\r\n');
    const out = dotStuff([input]);
    assert.equal(out[0]?.buffer, input.buffer);
  });

  test('property: any CRLF text, split anywhere, arrives intact and the terminator comes only at the end', () => {
    const line = fc.stringMatching(/^[.a-z ]{0,8}$/);
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 6 }), (lines, cuts) => {
        const text = lines.map((l) => l + '\r\n').join('');
        const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
        const chunks: string[] = [];
        let prev = 0;
        for (const p of points) {
          chunks.push(text.slice(prev, p));
          prev = p;
        }
        chunks.push(text.slice(prev));
        const w = wire(chunks);
        assert.equal(receive(w), text);
        assert.ok(w.endsWith('.\r\n'));
        assert.equal(w.indexOf('\r\n.\r\n'), text.length === 0 ? -1 : w.length - 5);
      }),
    );
  });

  test('an incremental stuffer gives the same bytes as the one-shot form', () => {
    const s = new DotStuffer();
    const out: Buffer[] = [];
    for (const c of ['.x\r\n', '.', 'y\r\n']) s.push(Buffer.from(c), out);
    s.end(out);
    assert.equal(Buffer.concat(out).toString(), wire(['.x\r\n.y\r\n']));
  });
});
