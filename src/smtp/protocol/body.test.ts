import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BodyReader, type BodyReaderOptions } from './body.js';

const BIG = 1 << 30;

function dataReader(opts: Partial<BodyReaderOptions> = {}): BodyReader {
  return new BodyReader({ maxSize: BIG, dotTerminated: true, ...opts });
}

/** Feed `wire` in the given pieces; returns the reader, its content and how many bytes it consumed. */
function run(wire: Buffer | string, cuts: number[] = [], opts: Partial<BodyReaderOptions> = {}) {
  const w = typeof wire === 'string' ? Buffer.from(wire, 'latin1') : wire;
  const r = dataReader(opts);
  let consumed = 0;
  let prev = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < w.length).sort((a, b) => a - b), w.length]) {
    if (c <= prev) continue;
    if (!r.done) consumed += r.feed(w.subarray(prev, c));
    prev = c;
  }
  return { r, body: Buffer.concat(r.chunks).toString('latin1'), consumed };
}

function stuff(content: string): string {
  return content.replace(/^\./gm, '..');
}

describe('BodyReader (DATA)', () => {
  test('ends at CRLF.CRLF and leaves pipelined commands unconsumed', () => {
    const wire = 'Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<>\r\n';
    const { r, body, consumed } = run(wire);
    assert.equal(r.done, true);
    assert.equal(body, 'Subject: x\r\n\r\nhello\r\n');
    assert.equal(wire.slice(consumed), 'MAIL FROM:<>\r\n');
    assert.equal(r.size, body.length);
  });

  test('an empty message is just the terminator', () => {
    const { r, body, consumed } = run('.\r\n');
    assert.equal(r.done, true);
    assert.equal(body, '');
    assert.equal(consumed, 3);
  });

  test('leading dots are unstuffed', () => {
    const { body } = run('..hidden\r\n...\r\n.x\r\n.\r\n');
    assert.equal(body, '.hidden\r\n..\r\nx\r\n');
  });

  test('the terminator split at every position across chunks is found', () => {
    const wire = 'a\r\n.b\r\n.\r\nNOOP\r\n';
    for (let i = 1; i < wire.length; i++) {
      for (let j = i; j < wire.length; j++) {
        const { r, body, consumed } = run(wire, [i, j]);
        assert.equal(r.done, true, `${i},${j}`);
        assert.equal(body, 'a\r\nb\r\n', `${i},${j}`);
        assert.equal(consumed, wire.length - 6, `${i},${j}`);
      }
    }
  });

  test('any dot-stuffed content split anywhere reads back exactly (property)', () => {
    const line = fc.stringMatching(/^[.a-zA-Z :]{0,40}$/);
    fc.assert(
      fc.property(
        fc.array(line, { maxLength: 30 }),
        fc.array(fc.nat(2000), { maxLength: 8 }),
        (lines, cuts) => {
          const content = lines.map((l) => l + '\r\n').join('');
          const wire = stuff(content) + '.\r\nQUIT\r\n';
          const { r, body, consumed } = run(wire, cuts);
          return r.done && r.error === null && body === content && wire.slice(consumed) === 'QUIT\r\n';
        },
      ),
    );
  });

  test('bare LF is normalised to CRLF', () => {
    const { r, body } = run('a\nb\r\n\nc\r\n.\r\n');
    assert.equal(r.done, true);
    assert.equal(body, 'a\r\nb\r\n\r\nc\r\n');
    assert.equal(r.bareLf, 2);
    assert.equal(r.error, null);
  });

  test('a dot line after a bare LF or ending in a bare LF does not end the message (smuggling)', () => {
    const a = run('a\n.\r\nMAIL FROM:<evil>\r\n');
    assert.equal(a.r.done, false);
    const b = run('a\r\n.\nMAIL FROM:<evil>\r\n');
    assert.equal(b.r.done, false);
    const c = run('a\r\n.\nx\r\n.\r\n');
    assert.equal(c.r.done, true);
    assert.equal(c.body, 'a\r\n\r\nx\r\n');
  });

  test('bare CR rejects the message but reading continues to the end', () => {
    const { r, consumed } = run('a\rb\r\nmore\r\n.\r\nNOOP\r\n');
    assert.equal(r.done, true);
    assert.equal(r.error, 'bareCr');
    assert.deepEqual(r.chunks, []);
    assert.equal(consumed, 'a\rb\r\nmore\r\n.\r\n'.length);
  });

  test('bare CR is detected across a chunk boundary and after a stuffed dot', () => {
    assert.equal(run('ab\rcd\r\n.\r\n', [3]).r.error, 'bareCr');
    assert.equal(run('ab\r\ncd\r\n.\r\n', [3]).r.error, null);
    assert.equal(run('x\r\n.\rz\r\n.\r\n').r.error, 'bareCr');
    assert.equal(run('x\r\n.\rz\r\n.\r\n', [5]).r.error, 'bareCr');
    assert.equal(run('x\rz\r\n.\r\n', [2]).r.error, 'bareCr');
  });

  test('NUL rejects the message; a NUL after the terminator is not part of it', () => {
    assert.equal(run('a\x00b\r\n.\r\n').r.error, 'nul');
    const r = run('ab\r\n.\r\n\x00');
    assert.equal(r.r.error, null);
  });

  test('a 1000-octet line is accepted, 1001 rejected with the reading continued', () => {
    const ok = run('x'.repeat(998) + '\r\n.\r\n');
    assert.equal(ok.r.error, null);
    const bad = run('x'.repeat(999) + '\r\n.\r\n');
    assert.equal(bad.r.error, 'lineLength');
    assert.equal(bad.r.done, true);
    const split = run('x'.repeat(5000) + '\r\n.\r\n', [100, 2000, 4000]);
    assert.equal(split.r.error, 'lineLength');
    assert.equal(split.r.done, true);
  });

  test('the stuffing dot does not count towards the line length', () => {
    assert.equal(run('.' + '.'.repeat(998) + '\r\n.\r\n').r.error, null);
  });

  test('over maxSize: stored chunks are dropped, reading continues, error is size', () => {
    const { r } = run('x'.repeat(500) + '\r\n' + 'y'.repeat(500) + '\r\n.\r\n', [300, 700], { maxSize: 600 });
    assert.equal(r.error, 'size');
    assert.equal(r.done, true);
    assert.deepEqual(r.chunks, []);
  });

  test('a message of exactly maxSize is accepted', () => {
    const { r } = run('x'.repeat(8) + '\r\n.\r\n', [], { maxSize: 10 });
    assert.equal(r.error, null);
  });

  test('Received: fields in the header section are counted; the limit is a loop', () => {
    const hdrs = (n: number) => 'Received: from x\r\n\tby y\r\n'.repeat(n);
    const ok = run(hdrs(99) + 'Subject: s\r\n\r\nReceived: in body\r\n.\r\n', [], { maxReceived: 100 });
    assert.equal(ok.r.receivedCount, 99);
    assert.equal(ok.r.error, null);
    const loop = run(hdrs(100) + '\r\nbody\r\n.\r\n', [7, 33, 1000], { maxReceived: 100 });
    assert.equal(loop.r.error, 'loop');
    assert.equal(loop.r.done, true);
  });

  test('Received: is matched case-insensitively even when split across chunks', () => {
    const { r } = run('rEcEiVeD: a\r\nX: y\r\n\r\n.\r\n', [3, 5]);
    assert.equal(r.receivedCount, 1);
  });

  test('content chunks are views into the input, not copies', () => {
    const wire = Buffer.from('hello\r\nworld\r\n.\r\n');
    const r = dataReader();
    r.feed(wire);
    assert.equal(r.chunks.length, 1);
    assert.equal(r.chunks[0]?.buffer, wire.buffer);
  });
});

describe('BodyReader (BDAT)', () => {
  test('consumes everything and does not interpret dots', () => {
    const r = new BodyReader({ maxSize: BIG, dotTerminated: false });
    assert.equal(r.feed(Buffer.from('.\r\n..x\r\n')), 8);
    assert.equal(r.done, false);
    assert.equal(Buffer.concat(r.chunks).toString(), '.\r\n..x\r\n');
  });
  test('BINARYMIME skips the line policies but keeps the size limit', () => {
    const r = new BodyReader({ maxSize: 10, dotTerminated: false, binary: true });
    r.feed(Buffer.from('a\rb\x00c\nd'));
    assert.equal(r.error, null);
    r.feed(Buffer.from('0123456789'));
    assert.equal(r.error, 'size');
  });
  test('a CR at the end of one chunk is fine when the next chunk starts with LF', () => {
    const r = new BodyReader({ maxSize: BIG, dotTerminated: false });
    r.feed(Buffer.from('a: b\r'));
    r.feed(Buffer.from('\n\r\nbody\r\n'));
    r.end();
    assert.equal(r.error, null);
    assert.equal(Buffer.concat(r.chunks).toString(), 'a: b\r\n\r\nbody\r\n');
  });
  test('a message whose last chunk ends in a CR (no LF ever follows) has a bare CR', () => {
    const r = new BodyReader({ maxSize: BIG, dotTerminated: false });
    r.feed(Buffer.from('a: b\r\n\r'));
    assert.equal(r.error, null, 'undecided until the end');
    r.end();
    assert.equal(r.error, 'bareCr');
    const bin = new BodyReader({ maxSize: BIG, dotTerminated: false, binary: true });
    bin.feed(Buffer.from('x\r'));
    bin.end();
    assert.equal(bin.error, null, 'BINARYMIME has no line policy');
  });
});

/**
 * The DATA policies of body.ts stated byte by byte over the whole wire, chunk-free: the model the
 * incremental reader must agree with however the wire is cut. Returns every violation seen (the
 * reader reports the first one it meets, which may depend on the cuts), the content, and where
 * the terminator ends.
 */
function model(wire: Buffer, o: { maxSize: number; maxLine: number; maxReceived: number }) {
  const content: number[] = [];
  const errors = new Set<string>();
  let line: number[] = [];
  let lineStart: 'crlf' | 'lf' | null = 'crlf';
  let inHeaders = true;
  let received = 0;
  let bareLf = 0;
  let done = false;
  let i = 0;
  const endLine = (): void => {
    if (o.maxLine > 0 && line.length > o.maxLine) errors.add('lineLength');
    if (inHeaders) {
      if (line.length === 2 && line[0] === 13) inHeaders = false;
      else if (Buffer.from(line.slice(0, 9)).toString('latin1').toLowerCase() === 'received:') {
        if (++received >= o.maxReceived) errors.add('loop');
      }
    }
    content.push(...line);
    line = [];
  };
  while (i < wire.length) {
    const b = wire[i] as number;
    if (lineStart !== null) {
      const kind = lineStart;
      lineStart = null;
      if (b === 46) {
        if (kind === 'crlf' && wire[i + 1] === 13 && wire[i + 2] === 10) {
          done = true;
          i += 3;
          break;
        }
        i++; // the stuffing dot (or a dot after a bare LF) is dropped
        continue;
      }
    }
    if (b === 0) errors.add('nul');
    if (b === 13 && wire[i + 1] !== 10) errors.add('bareCr');
    if (b === 10) {
      const crlf = i > 0 && wire[i - 1] === 13 && line.length > 0 && line[line.length - 1] === 13;
      if (!crlf) {
        bareLf++;
        line.push(13);
      }
      line.push(10);
      endLine();
      lineStart = crlf ? 'crlf' : 'lf';
    } else line.push(b);
    i++;
  }
  if (content.length > o.maxSize) errors.add('size');
  return { content: Buffer.from(content), errors, done, consumed: i, bareLf, received };
}

describe('BodyReader against the byte-by-byte model (property)', () => {
  const pieces = [
    'a',
    'x',
    '.',
    '..',
    '\r',
    '\n',
    '\r\n',
    '\0',
    'Received:',
    'rECEIVED: y',
    '\r\n.\r\n',
    ':',
  ];
  const wireArb = fc
    .array(fc.constantFrom(...pieces), { maxLength: 60 })
    .map((ps) => Buffer.from(`${ps.join('')}\r\n.\r\nQUIT\r\n`, 'latin1'));
  test('content, errors, terminator and counts agree for any wire cut anywhere', () => {
    fc.assert(
      fc.property(
        wireArb,
        fc.array(fc.nat(400), { maxLength: 10 }),
        fc.record({
          maxSize: fc.oneof(fc.constant(BIG), fc.nat(120)),
          maxLine: fc.constantFrom(0, 6, 12, 1000),
          maxReceived: fc.constantFrom(1, 2, 3, 100),
        }),
        (wire, cuts, o) => {
          const m = model(wire, o);
          const { r, consumed } = run(wire, cuts, {
            maxSize: o.maxSize,
            maxLineLength: o.maxLine,
            maxReceived: o.maxReceived,
          });
          assert.equal(r.done, m.done);
          assert.equal(consumed, m.consumed);
          assert.equal(r.size, m.content.length);
          assert.equal(r.bareLf, m.bareLf);
          if (m.errors.size === 0) {
            assert.equal(r.error, null);
            assert.deepEqual(Buffer.concat(r.chunks), m.content);
            assert.equal(r.receivedCount, m.received);
          } else {
            assert.ok(r.error !== null && m.errors.has(r.error), `${r.error} not in ${[...m.errors]}`);
            assert.equal(r.chunks.length, 0);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
