// The splice watcher: where one home's reversed ODMR session ends on a customer connection,
// whatever the chunking, with QUIT inside message content (DATA and BDAT) never taken for the end.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpliceWatch } from './splice.js';

const b = (s: string) => Buffer.from(s, 'latin1');

/** Runs a conversation; each home write may be split into pieces of `size` bytes. */
function run(
  w: SpliceWatch,
  steps: Array<['home' | 'cust', string]>,
  size = Number.POSITIVE_INFINITY,
): { forwarded: string; quit: boolean } {
  let forwarded = '';
  let quit = false;
  for (const [who, text] of steps) {
    const buf = b(text);
    for (let i = 0; i < buf.length; i += size) {
      const part = buf.subarray(i, Math.min(buf.length, i + size));
      if (who === 'cust') w.fromCustomer(part);
      else {
        const r = w.fromHome(part);
        forwarded += r.forward.toString('latin1');
        quit ||= r.quit;
      }
    }
  }
  return { forwarded, quit };
}

const SESSION: Array<['home' | 'cust', string]> = [
  ['home', 'EHLO home.test\r\n'],
  ['cust', '250-customer.test\r\n250-PIPELINING\r\n250 CHUNKING\r\n'],
  ['home', 'MAIL FROM:<a@x>\r\nRCPT TO:<u@acme.test>\r\nDATA\r\n'],
  ['cust', '250 ok\r\n250 ok\r\n'],
  ['cust', '354 go\r\n'],
  ['home', 'Subject: x\r\n\r\nQUIT\r\n..leading dot\r\nRSET\r\n.\r\n'],
  ['cust', '250 queued\r\n'],
  ['home', 'RSET\r\nMAIL FROM:<a@x>\r\nRCPT TO:<u@acme.test>\r\nBDAT 12 LAST\r\nQUIT\r\nQUIT\r\n'],
  ['cust', '250 ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n'],
];

describe('SpliceWatch', () => {
  for (const size of [Number.POSITIVE_INFINITY, 1, 3, 7]) {
    test(`the home's QUIT after its last reply ends its part (chunks of ${size})`, () => {
      const w = new SpliceWatch(true);
      const before = run(w, SESSION, size);
      assert.equal(before.quit, false, 'QUIT inside DATA or BDAT content is content');
      assert.ok(w.clean);
      const r = run(w, [['home', 'QUIT\r\n']], size);
      assert.equal(r.quit, true);
      assert.equal(r.forwarded, '', 'a held QUIT is not passed on');
      assert.ok(w.clean);
    });
  }

  test('the last home of a session passes its QUIT on', () => {
    const w = new SpliceWatch(false);
    run(w, SESSION);
    const r = run(w, [['home', 'QUIT\r\n']]);
    assert.deepEqual(r, { forwarded: 'QUIT\r\n', quit: true });
  });

  test('not clean inside a transaction, during data, or with replies outstanding', () => {
    const w = new SpliceWatch(true);
    run(w, [['home', 'EHLO h\r\n']]);
    assert.equal(w.clean, false, 'EHLO not answered');
    run(w, [['cust', '250 ok\r\n']]);
    assert.ok(w.clean);
    run(w, [
      ['home', 'MAIL FROM:<a@x>\r\nRCPT TO:<u@y>\r\nDATA\r\n'],
      ['cust', '250 ok\r\n250 ok\r\n354 go\r\n'],
      ['home', 'half a line'],
    ]);
    assert.equal(w.clean, false, 'inside DATA');
    run(w, [['home', '\r\n.\r\n']]);
    assert.equal(w.clean, false, 'final reply outstanding');
    run(w, [['cust', '250 done\r\n']]);
    assert.ok(w.clean);
  });

  test('a DATA refused with 554 leaves the stream in command mode', () => {
    const w = new SpliceWatch(true);
    run(w, [
      ['home', 'MAIL FROM:<a@x>\r\nRCPT TO:<u@y>\r\nDATA\r\n'],
      ['cust', '250 ok\r\n250 ok\r\n554 no\r\n'],
    ]);
    assert.ok(w.clean);
    assert.equal(run(w, [['home', 'QUIT\r\n']]).quit, true);
  });

  test('an empty message body ends at a lone dot', () => {
    const w = new SpliceWatch(true);
    run(w, [
      ['home', 'DATA\r\n'],
      ['cust', '354 go\r\n'],
      ['home', '.\r\n'],
      ['cust', '250 ok\r\n'],
    ]);
    assert.ok(w.clean);
  });
});
