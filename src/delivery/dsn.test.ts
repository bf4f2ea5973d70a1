import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rfc5322Date } from '../smtp/protocol/date.js';
import { buildDsn, type DsnInput, shouldNotify } from './dsn.js';

const ORIGINAL = 'From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nBody line\r\n';
const T0 = Date.UTC(2025, 6, 1, 12, 0, 0);

function input(over: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'mx.local.test',
    returnPath: 'a@example.org',
    arrivalDate: T0,
    now: T0 + 3_600_000,
    original: [Buffer.from(ORIGINAL)],
    random: () => 0.5,
    recipients: [
      {
        address: 'b@example.net',
        orcpt: 'rfc822;B@example.net',
        action: 'failed',
        status: '5.1.1',
        remoteMta: 'mx.example.net',
        diagnostic: 'smtp; 550 5.1.1 <b@example.net>: user unknown',
        lastAttempt: T0 + 60_000,
      },
    ],
    ...over,
  };
}

interface Parsed {
  headers: Map<string, string>;
  parts: { headers: Map<string, string>; body: string }[];
}

/** A small MIME reader: unfolds headers, finds the boundary, splits the parts, checks the close. */
function parse(data: Buffer): Parsed {
  const s = data.toString('utf8');
  assert.ok(!/[^\r]\n/.test(s), 'only CRLF line ends');
  const split = (block: string) => {
    const at = block.indexOf('\r\n\r\n');
    const headers = new Map<string, string>();
    for (const f of block
      .slice(0, at)
      .replace(/\r\n[ \t]/g, ' ')
      .split('\r\n')) {
      const c = f.indexOf(':');
      headers.set(f.slice(0, c).toLowerCase(), f.slice(c + 1).trim());
    }
    return { headers, body: block.slice(at + 4) };
  };
  const top = split(s);
  const m = /boundary="([^"]+)"/.exec(top.headers.get('content-type') ?? '');
  assert.ok(m, 'boundary parameter');
  const b = m[1]!;
  const chunks = top.body.split(`\r\n--${b}`);
  assert.equal(chunks.at(-1), '--\r\n', 'closing delimiter ends the message');
  const parts = chunks.slice(1, -1).map((c) => split(c.replace(/^\r\n/, '')));
  return { headers: top.headers, parts };
}

function fieldGroups(body: string): Map<string, string>[] {
  return body
    .trim()
    .split('\r\n\r\n')
    .map(
      (g) =>
        new Map(
          g
            .replace(/\r\n(?=[ \t])/g, '') // unfolded (RFC 5322 §2.2.3)
            .split('\r\n')
            .map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
        ),
    );
}

describe('buildDsn', () => {
  test('a failure report is a multipart/report with the three parts and all required fields', () => {
    const dsn = buildDsn(input());
    const p = parse(dsn.data);
    assert.equal(dsn.kind, 'failure');
    assert.equal(p.headers.get('from'), 'Mail Delivery System <MAILER-DAEMON@mx.local.test>');
    assert.equal(p.headers.get('to'), '<a@example.org>');
    assert.equal(p.headers.get('subject'), 'Undelivered Mail Returned to Sender');
    assert.equal(p.headers.get('auto-submitted'), 'auto-replied');
    assert.equal(p.headers.get('date'), 'Tue, 01 Jul 2025 13:00:00 +0000');
    assert.equal(p.headers.get('message-id'), dsn.messageId);
    assert.match(p.headers.get('content-type')!, /^multipart\/report; report-type=delivery-status;/);
    assert.deepEqual(
      p.parts.map((x) => x.headers.get('content-type')),
      ['text/plain; charset=us-ascii', 'message/delivery-status', 'message/rfc822'],
    );
    assert.match(
      p.parts[0]!.body,
      /<b@example\.net> \(host mx\.example\.net\): failed, status 5\.1\.1: 550 5\.1\.1/,
    );
    const [msgFields, rcpt] = fieldGroups(p.parts[1]!.body);
    assert.equal(msgFields?.get('reporting-mta'), 'dns; mx.local.test');
    assert.equal(msgFields?.get('arrival-date'), rfc5322Date(T0));
    assert.equal(rcpt?.get('original-recipient'), 'rfc822;B@example.net');
    assert.equal(rcpt?.get('final-recipient'), 'rfc822; b@example.net');
    assert.equal(rcpt?.get('action'), 'failed');
    assert.equal(rcpt?.get('status'), '5.1.1');
    assert.equal(rcpt?.get('remote-mta'), 'dns; mx.example.net');
    assert.equal(rcpt?.get('diagnostic-code'), 'smtp; 550 5.1.1 <b@example.net>: user unknown');
    assert.equal(rcpt?.get('last-attempt-date'), rfc5322Date(T0 + 60_000));
    assert.equal(p.parts[2]!.body, ORIGINAL);
    assert.equal(dsn.body8bit, false);
  });

  test('RET=HDRS returns only the header section as text/rfc822-headers', () => {
    const p = parse(buildDsn(input({ ret: 'HDRS' })).data);
    assert.equal(p.parts[2]?.headers.get('content-type'), 'text/rfc822-headers');
    assert.equal(p.parts[2]?.body, 'From: a@example.org\r\nTo: b@example.net\r\nSubject: hello\r\n');
  });

  test('without RET a large message is returned as headers only, RET=FULL returns it whole', () => {
    const big = [Buffer.from(ORIGINAL), Buffer.from('x'.repeat(200) + '\r\n')];
    const dflt = parse(buildDsn(input({ original: big, maxFullSize: 100 })).data);
    assert.equal(dflt.parts[2]?.headers.get('content-type'), 'text/rfc822-headers');
    const full = parse(buildDsn(input({ original: big, maxFullSize: 100, ret: 'FULL' })).data);
    assert.equal(full.parts[2]?.body, Buffer.concat(big).toString());
  });

  test('a delay report says until when, carries Will-Retry-Until and returns headers only', () => {
    const until = T0 + 5 * 86_400_000;
    const dsn = buildDsn(
      input({
        envid: 'QQ314159',
        recipients: [{ address: 'b@example.net', action: 'delayed', status: '4.4.1', willRetryUntil: until }],
      }),
    );
    const p = parse(dsn.data);
    assert.equal(dsn.kind, 'delay');
    assert.equal(p.headers.get('subject'), 'Delayed Mail (still being retried)');
    const [m, r] = fieldGroups(p.parts[1]!.body);
    assert.equal(m?.get('original-envelope-id'), 'QQ314159');
    assert.equal(r?.get('will-retry-until'), rfc5322Date(until));
    assert.equal(r?.has('original-recipient'), false);
    assert.equal(p.parts[2]?.headers.get('content-type'), 'text/rfc822-headers');
    assert.ok(p.parts[0]!.body.includes(`retried until ${rfc5322Date(until)}.`));
  });

  test('a success report has its own subject and one group per recipient', () => {
    const dsn = buildDsn(
      input({
        recipients: [
          { address: 'b@example.net', action: 'delivered', status: '2.0.0' },
          { address: 'c@example.net', action: 'relayed', status: '2.0.0' },
        ],
      }),
    );
    const p = parse(dsn.data);
    assert.equal(p.headers.get('subject'), 'Successful Mail Delivery Report');
    assert.equal(fieldGroups(p.parts[1]!.body).length, 3);
  });

  test('the boundary never occurs in the returned message', () => {
    const first = buildDsn(input());
    const b = /boundary="([^"]+)"/.exec(first.data.toString())![1]!;
    const evil = Buffer.from(`${ORIGINAL}--${b}--\r\n`);
    const dsn = buildDsn(input({ original: [evil] }));
    const p = parse(dsn.data);
    assert.equal(p.parts.length, 3);
    assert.equal(p.parts[2]?.body, evil.toString());
  });

  test('header injection through a diagnostic or address is neutralised', () => {
    const dsn = buildDsn(
      input({
        recipients: [
          { address: 'b@x', action: 'failed', status: '5.0.0', diagnostic: 'smtp; 550 bad\r\nBcc: victim@x' },
        ],
      }),
    );
    const p = parse(dsn.data);
    const [, r] = fieldGroups(p.parts[1]!.body);
    assert.equal(r?.get('diagnostic-code'), 'smtp; 550 bad Bcc: victim@x');
    assert.equal(r?.has('bcc'), false);
  });

  test('non-ASCII addresses use the RFC 6533 types; SMTPUTF8 only for a UTF-8 return path', () => {
    const dsn = buildDsn(
      input({ recipients: [{ address: 'jörg@example.net', action: 'failed', status: '5.1.1' }] }),
    );
    const p = parse(dsn.data);
    // The report's envelope and header fields are ASCII: any host with 8BITMIME (or the 7-bit
    // form, RFC 6533 allows it for these types) can take it.
    assert.equal(dsn.smtputf8, false);
    assert.equal(buildDsn(input({ returnPath: 'jörg@example.org' })).smtputf8, true);
    assert.equal(dsn.body8bit, true);
    assert.equal(p.parts[1]?.headers.get('content-type'), 'message/global-delivery-status');
    assert.equal(p.parts[2]?.headers.get('content-type'), 'message/global');
    assert.equal(fieldGroups(p.parts[1]!.body)[1]?.get('final-recipient'), 'utf-8; jörg@example.net');
  });

  test('an original with UTF-8 header fields is returned as message/global, which may be encoded', () => {
    const original = Buffer.from('Subject: Grüße\r\nFrom: <a@example.org>\r\n\r\nhi\r\n', 'utf8');
    const p = parse(buildDsn(input({ original: [original] })).data);
    assert.equal(p.parts[2]?.headers.get('content-type'), 'message/global');
    const hdrs = parse(buildDsn(input({ original: [original], ret: 'HDRS' })).data);
    assert.equal(hdrs.parts[2]?.headers.get('content-type'), 'text/rfc822-headers');
  });

  test('a long diagnostic is folded: every line within 998 octets, the value unchanged unfolded', () => {
    const long = `smtp; 550 5.7.1 ${Array.from({ length: 600 }, (_, i) => `w${i}`).join(' ')}`;
    const run = `smtp; 550 ${'x'.repeat(3000)}`;
    for (const diagnostic of [long, run]) {
      const dsn = buildDsn(
        input({ recipients: [{ address: 'b@x', action: 'failed', status: '5.7.1', diagnostic }] }),
      );
      const text = dsn.data.toString('utf8');
      for (const l of text.split('\r\n')) assert.ok(Buffer.byteLength(l) <= 998, `a line of ${l.length}`);
      const [, r] = fieldGroups(parse(dsn.data).parts[1]!.body);
      const got = r?.get('diagnostic-code') ?? '';
      if (diagnostic === long) assert.equal(got, diagnostic);
      else assert.equal(got.replace(/ /g, ''), diagnostic.replace(/ /g, ''), 'only spaces added in a run');
    }
  });

  test('a non-ASCII remote diagnostic is made ASCII in message/delivery-status', () => {
    const dsn = buildDsn(
      input({
        recipients: [{ address: 'b@x', action: 'failed', status: '5.0.0', diagnostic: 'smtp; 550 nö' }],
      }),
    );
    const p = parse(dsn.data);
    assert.equal(fieldGroups(p.parts[1]!.body)[1]?.get('diagnostic-code'), 'smtp; 550 n?');
  });
});

describe('shouldNotify', () => {
  test('never notifies the null sender', () => {
    for (const kind of ['failure', 'delay', 'success'] as const) {
      assert.equal(shouldNotify('', kind, undefined), false);
      assert.equal(shouldNotify('', kind, ['SUCCESS', 'FAILURE', 'DELAY']), false);
    }
  });

  test('without NOTIFY: failures yes, delays only by policy, success never', () => {
    assert.equal(shouldNotify('a@x', 'failure', undefined), true);
    assert.equal(shouldNotify('a@x', 'delay', undefined), false);
    assert.equal(shouldNotify('a@x', 'delay', undefined, { delayByDefault: true }), true);
    assert.equal(shouldNotify('a@x', 'success', undefined), false);
  });

  test('NOTIFY lists are honoured and NEVER silences everything', () => {
    assert.equal(shouldNotify('a@x', 'failure', ['NEVER']), false);
    assert.equal(shouldNotify('a@x', 'failure', ['DELAY']), false);
    assert.equal(shouldNotify('a@x', 'delay', ['DELAY']), true);
    assert.equal(shouldNotify('a@x', 'success', ['SUCCESS']), true);
    assert.equal(shouldNotify('a@x', 'success', ['FAILURE', 'DELAY']), false);
  });
});
