// The 7-bit conversion against generated MIME trees: every output byte is 7-bit, no line is longer
// than 998 octets, each part's header fields are kept in order (only Content-Transfer-Encoding
// changes), and decoding the output gives back every original body. Checked with our own small
// decoder over fast-check trees, and against Python's email package (a real, independent parser)
// over a batch of generated messages. Plus the cases that cannot be converted.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { hasPythonEmail, pythonSameMime } from '../../../test/support/mime-check.js';
import { type MimeEntity, parseMime } from '../protocol/mime.js';
import { inspectContent, toSevenBit } from './content.js';

type Tree =
  | { kind: 'leaf'; type: string; cte: string | undefined; headers: string[]; lines: Buffer[]; b64?: boolean }
  | { kind: 'multi'; subtype: string; headers: string[]; pre: string; epi: string; parts: Tree[] }
  | { kind: 'message'; headers: string[]; inner: Tree };

const bytesLine = fc
  .oneof(
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 90 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 200, maxLength: 990 }) },
  )
  .map((a) => Buffer.from(a.filter((b) => b !== 10 && b !== 13)));
const textLine = fc.stringMatching(/^[ -~]{0,60}$/).map((s) => Buffer.from(s.replace(/^-+/, ''), 'latin1'));
const line = fc.oneof(
  textLine,
  bytesLine,
  fc.constantFrom(Buffer.from('=41 '), Buffer.from('.'), Buffer.from('\t ')),
);
const headerField = fc.oneof(
  fc.stringMatching(/^[a-z]{1,8}$/).map((n) => `X-${n}: value of ${n}`),
  fc.constant('X-Folded: first part\r\n\tsecond part'),
);

const leaf: fc.Arbitrary<Tree> = fc.record({
  kind: fc.constant('leaf' as const),
  type: fc.constantFrom('text/plain; charset=utf-8', 'text/html', 'application/octet-stream', ''),
  cte: fc.constantFrom(undefined, '7bit', '8bit', '8BIT', 'binary', 'base64'),
  headers: fc.array(headerField, { maxLength: 2 }),
  lines: fc.array(line, { maxLength: 8 }),
});

const { tree } = fc.letrec<{ tree: Tree; multi: Tree; message: Tree }>((tie) => ({
  tree: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('multi'), tie('message')),
  multi: fc.record({
    kind: fc.constant('multi' as const),
    subtype: fc.constantFrom('mixed', 'alternative', 'related'),
    headers: fc.array(headerField, { maxLength: 1 }),
    pre: fc.constantFrom('', 'This is a MIME message.', 'pré-amble'),
    epi: fc.constantFrom('', 'epilogue', 'épilogue'),
    parts: fc.array(tie('tree'), { minLength: 1, maxLength: 3 }),
  }),
  message: fc.record({
    kind: fc.constant('message' as const),
    headers: fc.array(headerField, { maxLength: 1 }),
    inner: tie('tree'),
  }),
}));

let boundaries = 0;
const CRLF = '\r\n';

/** The bytes of a tree; `top` adds the message's own header fields. */
function build(t: Tree, top: boolean): Buffer {
  const head = top ? ['From: <a@example.org>', 'Subject: test', 'MIME-Version: 1.0'] : [];
  if (t.kind === 'leaf') {
    if (t.type) head.push(`Content-Type: ${t.type}`);
    if (t.cte) head.push(`Content-Transfer-Encoding: ${t.cte}`);
    head.push(...t.headers);
    let body: Buffer = Buffer.concat(t.lines.flatMap((l, i) => (i === 0 ? [l] : [Buffer.from(CRLF), l])));
    if (t.cte === 'base64')
      body = Buffer.from(
        body
          .toString('base64')
          .replace(/.{1,76}/g, '$&\r\n')
          .trimEnd(),
      );
    return Buffer.concat([Buffer.from(head.join(CRLF) + CRLF + CRLF, 'latin1'), body]);
  }
  if (t.kind === 'message') {
    head.push('Content-Type: message/rfc822', ...t.headers);
    const inner = build(t.inner, true);
    return Buffer.concat([Buffer.from(head.join(CRLF) + CRLF + CRLF, 'latin1'), inner]);
  }
  const b = `=_b${++boundaries}.x`;
  head.push(`Content-Type: multipart/${t.subtype}; boundary="${b}"`, ...t.headers);
  const chunks: Buffer[] = [Buffer.from(head.join(CRLF) + CRLF + CRLF + (t.pre ? t.pre + CRLF : ''), 'utf8')];
  for (const p of t.parts) chunks.push(Buffer.from(`--${b}${CRLF}`), build(p, false), Buffer.from(CRLF));
  chunks.push(Buffer.from(`--${b}--${CRLF}${t.epi ? t.epi + CRLF : ''}`, 'utf8'));
  return Buffer.concat(chunks);
}

function qpDecode(b: Buffer): Buffer {
  const s = b.toString('latin1').replace(/=\r\n/g, '');
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '=' && /^[0-9A-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      out.push(Number.parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(s.charCodeAt(i));
  }
  return Buffer.from(out);
}

function decoded(buf: Buffer, e: MimeEntity): Buffer {
  const body = buf.subarray(e.bodyStart, e.bodyEnd);
  if (e.cte === 'quoted-printable') return qpDecode(body);
  if (e.cte === 'base64') return Buffer.from(body.toString('latin1'), 'base64');
  return Buffer.from(body);
}

/** Header fields other than Content-Transfer-Encoding (and those we may add), in order. */
function kept(buf: Buffer, e: MimeEntity): string[] {
  return buf
    .toString('latin1', e.headerStart, e.headerEnd)
    .split(/\r\n(?![ \t])/)
    .filter((f) => f.length > 0 && !/^(content-transfer-encoding|mime-version):/i.test(f))
    .filter((f) => !/^content-type: text\/plain; charset=(utf-8|unknown-8bit)$/i.test(f));
}

/** Walks input and output trees together, checking headers and bodies. */
function compare(a: Buffer, ea: MimeEntity, b: Buffer, eb: MimeEntity): void {
  const ha = kept(a, ea);
  const hb = kept(b, eb);
  assert.deepEqual(hb.slice(0, ha.length), ha, 'header fields kept in order');
  assert.equal(eb.type, ea.type);
  if (ea.parts) {
    assert.equal(eb.parts?.length, ea.parts.length, 'same number of parts');
    ea.parts.forEach((p, i) => {
      compare(a, p, b, eb.parts![i]!);
    });
  } else if (ea.message) {
    assert.ok(eb.message, 'the enclosed message is still parsed as one');
    compare(a, ea.message, b, eb.message);
  } else {
    assert.deepEqual(decoded(b, eb), decoded(a, ea), 'the decoded body is unchanged');
  }
}

function convert(msg: Buffer): Buffer {
  const r = toSevenBit(inspectContent([msg]), { utf8Headers: false });
  assert.ok(r.ok, r.ok ? '' : r.why);
  const out = Buffer.concat(r.data);
  assert.equal(r.size, out.length);
  return out;
}

function check7bit(out: Buffer): void {
  for (let i = 0; i < out.length; i++) assert.ok(out[i]! < 128, `8-bit byte at ${i}`);
  for (const l of out.toString('latin1').split('\r\n')) assert.ok(l.length <= 998, `line of ${l.length}`);
  assert.doesNotMatch(out.toString('latin1'), /\r(?!\n)|(?<!\r)\n/, 'CRLF line breaks only');
}

describe('7-bit conversion of 8-bit MIME (RFC 6152)', () => {
  test('decoding the 7-bit form of any generated MIME tree gives back every body and header field', () => {
    fc.assert(
      fc.property(tree, (t) => {
        const msg = build(t, true);
        const out = convert(msg);
        check7bit(out);
        compare(msg, parseMime(msg), out, parseMime(out));
      }),
      { numRuns: 300 },
    );
  });

  test("Python's email package reads the 7-bit form with the same parts and decoded bodies", (t) => {
    if (!hasPythonEmail()) {
      t.skip('python3 is not installed');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'logmta-mime-'));
    try {
      const samples = fc.sample(tree, { numRuns: 150, seed: 6152 });
      samples.forEach((s, i) => {
        const msg = build(s, true);
        writeFileSync(join(dir, `${i}.in`), msg);
        writeFileSync(join(dir, `${i}.out`), convert(msg));
      });
      assert.equal(pythonSameMime(dir, samples.length), samples.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a message that is only 7-bit is sent byte for byte', () => {
    const msg = Buffer.from('Subject: a\r\nContent-Type: text/plain\r\n\r\nplain text\r\n');
    assert.deepEqual(convert(msg), msg);
  });

  test('a non-MIME 8-bit message gets MIME-Version, its charset and quoted-printable', () => {
    const msg = Buffer.from('Subject: a\r\nFrom: <a@b>\r\n\r\ngrüße\r\n');
    assert.equal(
      convert(msg).toString(),
      'Subject: a\r\nFrom: <a@b>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n' +
        'Content-Transfer-Encoding: quoted-printable\r\n\r\ngr=C3=BC=C3=9Fe\r\n',
    );
    const latin1 = Buffer.from('Subject: a\r\n\r\ngr\xfc\xdfe\r\n', 'latin1');
    assert.match(convert(latin1).toString(), /charset=unknown-8bit/);
  });

  const refuses = (msg: string, why: RegExp) => {
    const r = toSevenBit(inspectContent([Buffer.from(msg, 'utf8')]), { utf8Headers: false });
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.why, why);
  };

  test('what cannot be converted is refused with the reason', () => {
    refuses('Subject: grüße\r\n\r\nbody é\r\n', /header fields hold 8-bit bytes/);
    refuses(
      'Content-Type: message/partial; id="x"; number=1\r\n\r\nSubject: a\r\n\r\né\r\n',
      /message\/partial/,
    );
    refuses('Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD é\r\n', /base64 part/);
    refuses('Content-Type: multipart/mixed\r\n\r\nno boundary é\r\n', /without a usable boundary/);
    refuses('Content-Type: message/rfc822\r\n\r\nSubject: é\r\n\r\nx\r\n', /header fields/);
  });

  test('UTF-8 header fields are kept when the message goes with SMTPUTF8; bodies are converted', () => {
    const msg = Buffer.from('Subject: grüße\r\nMIME-Version: 1.0\r\n\r\nbody é\r\n', 'utf8');
    const r = toSevenBit(inspectContent([msg]), { utf8Headers: true });
    assert.ok(r.ok);
    assert.match(
      Buffer.concat(r.data).toString('utf8'),
      /^Subject: grüße\r\n[\s\S]*\r\n\r\nbody =C3=A9\r\n$/,
    );
  });

  test('a message/global whose enclosed header is UTF-8 is quoted-printable as a whole', () => {
    const inner = 'Subject: grüße\r\n\r\nbody é\r\n';
    const msg = Buffer.from(`MIME-Version: 1.0\r\nContent-Type: message/global\r\n\r\n${inner}`, 'utf8');
    const out = convert(msg);
    check7bit(out);
    const e = parseMime(out);
    assert.equal(e.cte, 'quoted-printable');
    assert.equal(decoded(out, e).toString('utf8'), inner);
  });

  test('the UTF-8 parts of a delivery report are quoted-printable (RFC 6533)', () => {
    for (const type of ['message/global-delivery-status', 'message/global-headers']) {
      const body = 'Final-Recipient: utf-8; jörg@example.net\r\n';
      const msg = Buffer.from(`MIME-Version: 1.0\r\nContent-Type: ${type}\r\n\r\n${body}`, 'utf8');
      const out = convert(msg);
      check7bit(out);
      const e = parseMime(out);
      assert.equal(e.cte, 'quoted-printable', type);
      assert.equal(decoded(out, e).toString('utf8'), body, type);
    }
  });

  test('inspection tells header bytes from body bytes', () => {
    const f = (s: string) => inspectContent([Buffer.from(s, 'utf8')]);
    assert.deepEqual(
      [f('Subject: é\r\n\r\nascii\r\n').header8bit, f('Subject: é\r\n\r\nascii\r\n').body8bit],
      [true, false],
    );
    const nested = 'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-Name: é\r\n\r\nx\r\n--b--\r\n';
    assert.deepEqual([f(nested).header8bit, f(nested).body8bit], [true, false]);
    assert.deepEqual(
      [f('Subject: a\r\n\r\né\r\n').header8bit, f('Subject: a\r\n\r\né\r\n').body8bit],
      [false, true],
    );
  });
});
