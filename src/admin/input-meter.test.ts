// The input meter against the message pipeline it measures (message.ts): for any input cut into
// any chunks, what it counts never exceeds the queued message's size (so sendmail never refuses a
// message that fits), and once every line has ended it is the message's size without the header
// fields sendmail adds.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { InputMeter } from './input-meter.js';
import { dropMboxFrom, normalizeInput, parseMessage } from './message.js';

/** The queued message's size before Date/From/Message-ID are added: fields without Bcc, the separator, the body. */
function queuedSize(text: string, ignoreDots: boolean): number {
  const p = parseMessage(dropMboxFrom(normalizeInput(text, ignoreDots)));
  const fields = p.fields.filter((f) => f.name.toLowerCase() !== 'bcc');
  return fields.reduce((n, f) => n + f.raw.length + 2, 0) + 2 + p.body.length;
}

function measure(text: string, ignoreDots: boolean, cuts: number[]): InputMeter {
  const m = new InputMeter(ignoreDots);
  let at = 0;
  for (const c of cuts.map((x) => x % (text.length + 1)).sort((a, b) => a - b)) {
    m.feed(text.slice(at, c));
    at = Math.max(at, c);
  }
  m.feed(text.slice(at));
  return m;
}

const line = fc.constantFrom(
  'Bcc: x@y',
  'bcc  :z',
  ' folded',
  '\tfolded',
  'From a b',
  'From: me',
  'Subject: s',
  'X-Long: ' + 'v'.repeat(1200),
  'Bcc: ' + 'w'.repeat(1500),
  'no field here',
  '.',
  '..',
  '',
  '\r',
  'a\rb',
  'Fro',
  'body text',
);
const input = fc
  .tuple(fc.array(line, { maxLength: 12 }), fc.constantFrom('\n', '\r\n'), fc.boolean())
  .map(([ls, eol, ended]) => ls.join(eol) + (ended && ls.length > 0 ? eol : ''));

describe('InputMeter', () => {
  test('never more than the queued message; exact once every line has ended', () => {
    fc.assert(
      fc.property(input, fc.boolean(), fc.array(fc.nat(), { maxLength: 8 }), (text, ignoreDots, cuts) => {
        const m = measure(text, ignoreDots, cuts);
        const size = queuedSize(text, ignoreDots);
        const p = parseMessage(dropMboxFrom(normalizeInput(text, ignoreDots)));
        // Without a separator the queued message gains one (completeMessage adds it).
        const exact = size - (p.hadSeparator ? 0 : 2);
        assert.ok(m.size <= size, `${m.size} > ${size} for ${JSON.stringify(text)}`);
        if (text === '' || text.endsWith('\n') || m.ended)
          assert.equal(m.size, exact, JSON.stringify({ text, ignoreDots }));
      }),
      { numRuns: 3000 },
    );
  });

  test('a long line without an end is counted as it arrives (a Bcc field, a lone dot, never)', () => {
    const m = new InputMeter(false);
    m.feed('Subject: s\n\n');
    for (let i = 0; i < 100; i++) m.feed('x'.repeat(1000));
    assert.equal(m.size, 14 + 100_000);
    const b = new InputMeter(false);
    b.feed('Bcc: ');
    for (let i = 0; i < 100; i++) b.feed('y'.repeat(1000));
    assert.equal(b.size, 0);
    const d = new InputMeter(false);
    d.feed('a: b\n.\nmore\n');
    assert.equal(d.ended, true);
    assert.equal(d.size, 6);
  });
});
