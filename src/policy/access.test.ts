import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { configFromToml } from '../config/index.js';
import type { SessionContext } from '../smtp/server/hooks.js';
import { accessControl, firstMatch, matchesAddress } from './access.js';
import { parseAddressPattern } from '../config/access-section.js';

const rules = (toml: string) => configFromToml(`local = []\n${toml}`).access;
const p = (...list: string[]) => list.map((e) => parseAddressPattern(e, true));

function ctx(ip: string, sender: string, auth?: string): SessionContext {
  return {
    client: { ip, port: 1, ...(auth ? { auth } : {}) },
    localAddress: '192.0.2.1',
    localPort: 25,
    loopback: false,
    submission: false,
    sender,
    recipientCount: 0,
    messageId: 'M1',
  };
}

describe('access: address patterns', () => {
  test('a domain matches itself and its subdomains; @domain only itself; user@ any domain; <> the null sender', () => {
    const list = p('spammer.example');
    assert.ok(matchesAddress(list, 'a@spammer.example'));
    assert.ok(matchesAddress(list, 'a@mx.SPAMMER.example.'));
    assert.ok(!matchesAddress(list, 'a@notspammer.example'));
    assert.ok(!matchesAddress(list, ''));
    assert.ok(
      matchesAddress(p('@x.example'), 'b@X.example') && !matchesAddress(p('@x.example'), 'b@y.x.example'),
    );
    assert.ok(matchesAddress(p('Bad@x.example'), 'bad@X.EXAMPLE'), 'addresses compare without case');
    assert.ok(!matchesAddress(p('bad@x.example'), 'bad2@x.example'));
    assert.ok(matchesAddress(p('mailer-daemon@'), 'MAILER-DAEMON@any.example'));
    assert.ok(matchesAddress(p('<>'), '') && !matchesAddress(p('<>'), 'a@b.example'));
  });
});

describe('access: the ordered list', () => {
  const list = rules(`
[[access]]
client = ["192.0.2.5"]
action = "permit"
[[access]]
client = ["192.0.2.0/24", "2001:db8::/32"]
action = "reject"
text = "Spam source; see https://example.test/blocked"
[[access]]
sender = ["bad@x.example", "spammer.example"]
action = "defer"
[[access]]
recipient = ["info@example.test", "postmaster@example.test"]
action = "reject"
`);
  const facts = (ip: string, sender: string, recipient: string, auth?: string) => ({
    ip,
    sender,
    recipient,
    auth,
  });

  test('the first match wins: a permit before a wider reject lets one host through', () => {
    assert.equal(firstMatch(list, facts('192.0.2.5', 'bad@x.example', 'info@example.test')), 0);
    assert.equal(firstMatch(list, facts('192.0.2.6', 'a@b.example', 'c@d.example')), 1);
    assert.equal(firstMatch(list, facts('::ffff:192.0.2.6', '', 'c@d.example')), 1, 'IPv4-mapped');
    assert.equal(firstMatch(list, facts('2001:db8:ffff::1', '', 'c@d.example')), 1);
    assert.equal(firstMatch(list, facts('198.51.100.1', 'x@mail.spammer.example', 'c@d.example')), 2);
    assert.equal(firstMatch(list, facts('198.51.100.1', 'a@b.example', 'INFO@example.test')), 3);
    assert.equal(firstMatch(list, facts('198.51.100.1', 'a@b.example', 'other@example.test')), -1);
  });

  test('client rules never match an authenticated session; sender and recipient rules do', () => {
    assert.equal(firstMatch(list, facts('192.0.2.6', 'a@b.example', 'c@d.example', 'ann')), -1);
    assert.equal(firstMatch(list, facts('192.0.2.6', 'bad@x.example', 'c@d.example', 'ann')), 2);
  });

  test('postmaster is caught only by a rule naming it, never by client, sender or domain rules', () => {
    assert.equal(firstMatch(list, facts('192.0.2.6', 'bad@x.example', 'postmaster@other.example')), -1);
    assert.equal(firstMatch(list, facts('192.0.2.6', 'bad@x.example', 'postmaster')), -1);
    assert.equal(firstMatch(list, facts('192.0.2.6', 'a@b.example', 'Postmaster@example.test')), 3);
    const byDomain = rules('[[access]]\nrecipient = ["example.test"]\naction = "reject"\n');
    assert.equal(firstMatch(byDomain, facts('1.2.3.4', '', 'postmaster@example.test')), -1);
    assert.equal(firstMatch(byDomain, facts('1.2.3.4', '', 'ann@example.test')), 0);
    const named = rules('[[access]]\nrecipient = ["postmaster@"]\naction = "defer"\n');
    assert.equal(firstMatch(named, facts('1.2.3.4', '', 'postmaster')), 0);
  });

  test('replies: reject 554 5.7.1, defer 450 4.7.1, in Postfix words with the rule text; a permit is remembered', () => {
    const a = accessControl(list);
    const check = a.filter.checkRecipient!;
    assert.deepEqual(check('c@d.example', ctx('192.0.2.6', 'a@b.example')), {
      code: 554,
      enhanced: '5.7.1',
      text: 'Client host [192.0.2.6] rejected: Spam source; see https://example.test/blocked',
    });
    assert.deepEqual(check('c@d.example', ctx('198.51.100.1', 'bad@x.example')), {
      code: 450,
      enhanced: '4.7.1',
      text: '<bad@x.example>: Sender address rejected: Access denied',
    });
    assert.deepEqual(check('info@example.test', ctx('198.51.100.1', '')), {
      code: 554,
      enhanced: '5.7.1',
      text: '<info@example.test>: Recipient address rejected: Access denied',
    });
    const permitted = ctx('192.0.2.5', '');
    assert.equal(check('c@d.example', permitted), null);
    assert.equal(a.permitted(permitted), true);
    const plain = ctx('198.51.100.1', 'a@b.example');
    assert.equal(check('c@d.example', plain), null);
    assert.equal(a.permitted(plain), false, 'no rule matched: not a permit');
  });
});
