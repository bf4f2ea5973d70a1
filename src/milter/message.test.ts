import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { applyHeaderEdit, fieldForMilter, joinMessage, normaliseBody, splitMessage } from './message.js';

const received = Buffer.from('Received: from c ([192.0.2.1])\r\n\tby mx.test (logmta); now\r\n');
const rest = Buffer.from(
  'From: a@example.org\r\nSubject: hello\r\n folded\r\nX-8bit: caf\xe9\r\nReceived: earlier\r\n\r\nbody line\r\n',
  'latin1',
);

const text = (d: Buffer[]): string => Buffer.concat(d).toString('latin1');

describe('milter message view and edits', () => {
  test('splitting and joining an unedited message gives the same bytes and keeps our Received chunk', () => {
    const m = splitMessage([received, rest], received);
    assert.deepEqual(
      m.fields.map((f) => f.name),
      ['Received', 'From', 'Subject', 'X-8bit', 'Received'],
    );
    assert.equal(m.fields[0]?.ours, received);
    const out = joinMessage(m);
    assert.equal(out[0], received);
    assert.equal(text(out), text([received, rest]));
  });

  test('any message splits and joins back to itself', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('A: b', ' c', '', 'x', 'Sub: j\xe9', '\tz', ':', 'B:'), { maxLength: 12 }),
        (lines) => {
          const body = Buffer.from(lines.map((l) => `${l}\r\n`).join(''), 'latin1');
          assert.equal(text(joinMessage(splitMessage([received, body], received))), text([received, body]));
        },
      ),
    );
  });

  test('filters see values without the leading space, folded lines joined by LF, 8-bit bytes intact', () => {
    const m = splitMessage([received, rest], received);
    assert.deepEqual(fieldForMilter(m.fields[2]!, false), { name: 'Subject', value: 'hello\n folded' });
    assert.deepEqual(fieldForMilter(m.fields[2]!, true), { name: 'Subject', value: ' hello\n folded' });
    assert.equal(fieldForMilter(m.fields[3]!, false).value, 'caf\xe9');
  });

  test('a change counts only fields the filter saw: Received #1 is the one after ours', () => {
    const m = splitMessage([received, rest], received);
    applyHeaderEdit(m.fields, { type: 'chgheader', index: 1, name: 'received', value: 'rewritten' }, false);
    assert.match(text(joinMessage(m)), /^Received: from c[\s\S]*Received: rewritten\r\n\r\nbody/);
  });

  test('a change with an empty value deletes; one for a missing field appends it', () => {
    const m = splitMessage([received, rest], received);
    applyHeaderEdit(m.fields, { type: 'chgheader', index: 0, name: 'Subject', value: '' }, false);
    applyHeaderEdit(m.fields, { type: 'chgheader', index: 2, name: 'From', value: 'x@y' }, false);
    const out = text(joinMessage(m));
    assert.doesNotMatch(out, /Subject/);
    assert.match(out, /Received: earlier\r\nFrom: x@y\r\n\r\n/);
  });

  test('insert indexes count every field: 0 is above our Received, 1 just below it', () => {
    const m = splitMessage([received, rest], received);
    applyHeaderEdit(
      m.fields,
      { type: 'insheader', index: 1, name: 'DKIM-Signature', value: 'v=1;\n\tb=x' },
      false,
    );
    applyHeaderEdit(
      m.fields,
      { type: 'insheader', index: 0, name: 'Authentication-Results', value: 'mx' },
      false,
    );
    applyHeaderEdit(m.fields, { type: 'addheader', name: 'X-Spam', value: 'Yes' }, false);
    const out = joinMessage(m);
    assert.equal(out[1], received, 'our chunk survives edits around it');
    assert.match(
      text(out),
      /^Authentication-Results: mx\r\nReceived: from c[\s\S]*\r\nDKIM-Signature: v=1;\r\n\tb=x\r\nFrom:[\s\S]*X-Spam: Yes\r\n\r\nbody line\r\n$/,
    );
  });

  test('a replaced body gets CRLF line ends and a final line end', () => {
    assert.equal(normaliseBody([Buffer.from('a\nb\r'), Buffer.from('\nc')]).toString(), 'a\r\nb\r\nc\r\n');
    assert.equal(normaliseBody([]).length, 0);
  });

  test('a message without a body or without headers splits sensibly', () => {
    const noBody = splitMessage([received, Buffer.from('Subject: x\r\n')], received);
    assert.equal(noBody.separator, false);
    assert.equal(noBody.body.length, 0);
    const noHeaders = splitMessage([received, Buffer.from('\r\njust body\r\n')], received);
    assert.equal(noHeaders.fields.length, 1);
    assert.equal(text(noHeaders.body), 'just body\r\n');
  });
});
