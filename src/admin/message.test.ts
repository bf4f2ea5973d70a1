import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  completeMessage,
  dropMboxFrom,
  normalizeInput,
  parseAddressList,
  parseMessage,
  recipientsFromHeaders,
} from './message.js';

const opts = { date: 'Sat, 01 Jan 2000 00:00:00 +0000', messageId: '<x@h>', from: 'me@h', removeBcc: true };

describe('sendmail message preparation', () => {
  test('LF line ends become CRLF and a final line without newline is ended', () => {
    assert.equal(normalizeInput('a\nb\r\nc', true), 'a\r\nb\r\nc\r\n');
  });

  test('a lone dot ends the input unless -i', () => {
    assert.equal(normalizeInput('a\n.\nb\n', false), 'a\r\n');
    assert.equal(normalizeInput('a\n.\nb\n', true), 'a\r\n.\r\nb\r\n');
    assert.equal(normalizeInput('a\n..\nb\n', false), 'a\r\n..\r\nb\r\n');
  });

  test('a leading mbox "From " line is dropped; a From: field or a later "From " line is not', () => {
    assert.equal(dropMboxFrom('From abc Mon Sep 17 00:00:00 2001\r\nSubject: x\r\n'), 'Subject: x\r\n');
    assert.equal(dropMboxFrom('From: a@b\r\n\r\nFrom here\r\n'), 'From: a@b\r\n\r\nFrom here\r\n');
    assert.equal(dropMboxFrom('From x'), '');
  });

  test('header fields are split from the body, folded lines kept with their field', () => {
    const p = parseMessage('To: a@x,\r\n b@y\r\nSubject: hi\r\n\r\nbody\r\n');
    assert.deepEqual(
      p.fields.map((f) => f.name),
      ['To', 'Subject'],
    );
    assert.equal(p.fields[0]!.raw, 'To: a@x,\r\n b@y');
    assert.equal(p.body, 'body\r\n');
    assert.equal(p.hadSeparator, true);
  });

  test('input without a header block is all body', () => {
    const p = parseMessage('just text\r\n');
    assert.equal(p.fields.length, 0);
    assert.equal(p.body, 'just text\r\n');
  });

  test('address lists: display names, quoted commas, comments, groups', () => {
    assert.deepEqual(
      parseAddressList(
        '"Doe, John" <john@x.org>, plain@y.org (comment, with comma), team: a@t.org, b@t.org;, <c@z.org>',
      ),
      ['john@x.org', 'plain@y.org', 'a@t.org', 'b@t.org', 'c@z.org'],
    );
    assert.deepEqual(parseAddressList('undisclosed-recipients:;'), []);
  });

  test('-t takes To, Cc and Bcc recipients once each, and not From/Reply-To', () => {
    const p = parseMessage(
      'From: f@x\r\nReply-To: r@x\r\nTo: A <a@x>, b@x\r\nCc: B@X\r\nBcc: hidden@y\r\n\r\n',
    );
    assert.deepEqual(recipientsFromHeaders(p.fields), ['a@x', 'b@x', 'hidden@y']);
  });

  test('Bcc is removed and missing From, Date, Message-ID are added', () => {
    const out = completeMessage(parseMessage('To: a@x\r\nBcc: b@y,\r\n c@y\r\n\r\nhello\r\n'), opts);
    assert.equal(
      out,
      'From: me@h\r\nDate: Sat, 01 Jan 2000 00:00:00 +0000\r\nMessage-ID: <x@h>\r\nTo: a@x\r\n\r\nhello\r\n',
    );
  });

  test('fields already present are left alone, byte for byte', () => {
    const src = 'from: Me <me@x>\r\nDATE: whenever\r\nMessage-Id: <m@x>\r\nX-Odd:  spaced  \r\n\r\nb\r\n';
    assert.equal(completeMessage(parseMessage(src), opts), src);
  });

  test('a full name (-F) goes into an added From', () => {
    const out = completeMessage(parseMessage('\r\nbody\r\n'), { ...opts, fullName: 'Cron "Daemon"' });
    assert.match(out, /^From: "Cron Daemon" <me@h>\r\n/);
  });
});
