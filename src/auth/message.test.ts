import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fromDomains, headerFields, splitMessage } from './message.js';

const msg = 'Received: x\r\nFrom: a@b.test\r\nSubject: s\r\n\tfolded\r\n\r\nbody\r\n\r\nmore\r\n';

describe('splitMessage', () => {
  test('splits at the first empty line wherever the chunks are cut', () => {
    const whole = Buffer.from(msg);
    for (let cut = 0; cut <= whole.length; cut++) {
      for (const cut2 of [cut, Math.min(whole.length, cut + 1), Math.min(whole.length, cut + 3)]) {
        const chunks = [whole.subarray(0, cut), whole.subarray(cut, cut2), whole.subarray(cut2)];
        const r = splitMessage(chunks);
        assert.equal(
          r.header.toString(),
          'Received: x\r\nFrom: a@b.test\r\nSubject: s\r\n\tfolded\r\n',
          `cut ${cut}/${cut2}`,
        );
        assert.equal(Buffer.concat(r.body).toString(), 'body\r\n\r\nmore\r\n', `cut ${cut}/${cut2}`);
      }
    }
  });

  test('a message without an empty line is all header; one opening with it has no header', () => {
    assert.deepEqual(splitMessage([Buffer.from('A: b\r\nC: d\r\n')]).body, []);
    assert.equal(splitMessage([Buffer.from('A: b\r\nC: d\r\n')]).header.toString(), 'A: b\r\nC: d\r\n');
    const r = splitMessage([Buffer.from('\r\nbody\r\n')]);
    assert.equal(r.header.length, 0);
    assert.equal(Buffer.concat(r.body).toString(), 'body\r\n');
  });
});

describe('header fields and From: domains', () => {
  test('folded fields stay whole', () => {
    assert.deepEqual(
      headerFields(Buffer.from('A: 1\r\nB: 2\r\n 3\r\n')).map((f) => [f.name, f.raw]),
      [
        ['A', 'A: 1'],
        ['B', 'B: 2\r\n 3'],
      ],
    );
  });

  test('the domains of the From: addresses, through display names, comments and groups', () => {
    const d = (v: string) => fromDomains(Buffer.from(`To: x@to.test\r\nFrom: ${v}\r\n`));
    assert.deepEqual(d('alice@Example.ORG'), ['example.org']);
    assert.deepEqual(d('"Alice @ Home" <alice@example.org>'), ['example.org']);
    assert.deepEqual(d('Alice (at evil@evil.test) <alice@example.org.>'), ['example.org']);
    assert.deepEqual(d('a@one.test, "B" <b@two.test>'), ['one.test', 'two.test']);
    assert.deepEqual(d('team: a@one.test, b@one.test;'), ['one.test', 'one.test']);
    assert.deepEqual(d('undisclosed-recipients:;'), []);
    assert.deepEqual(d('no address here'), []);
    assert.deepEqual(fromDomains(Buffer.from('From: a@one.test\r\nFrom: b@two.test\r\n')), [
      'one.test',
      'two.test',
    ]);
  });
});
