import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type CheckOutcome, decide } from './policy.js';
import { authResultsField, authservIdOf, removeOurResults } from './results.js';

describe('Authentication-Results', () => {
  test('our field has the authserv-id and one result per line; control characters cannot break it', () => {
    assert.equal(
      authResultsField('mx.test', ['spf=pass smtp.mailfrom=a@b.test', 'dkim=none\r\nX-Injected: yes']),
      'Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=a@b.test;\r\n\tdkim=none X-Injected: yes\r\n',
    );
    assert.equal(authResultsField('mx.test', []), 'Authentication-Results: mx.test; none\r\n');
  });

  test('the authserv-id is the first token, after comments, case-insensitive', () => {
    assert.equal(authservIdOf(' MX.test; spf=pass'), 'mx.test');
    assert.equal(authservIdOf(' (forged) mx.test 1; dkim=pass'), 'mx.test');
    assert.equal(authservIdOf('\r\n\tmx.test;'), 'mx.test');
  });

  test('fields claiming our id are removed, others and their folding kept', () => {
    const h = Buffer.from(
      'Received: x\r\nAuthentication-Results: mx.test; dmarc=pass\r\nAuthentication-Results: other.test;\r\n\tspf=pass\r\nauthentication-results: Mx.Test;\r\n dkim=pass\r\nSubject: s\r\n',
    );
    const r = removeOurResults(h, 'mx.test');
    assert.equal(r.removed, 2);
    assert.equal(
      r.header.toString(),
      'Received: x\r\nAuthentication-Results: other.test;\r\n\tspf=pass\r\nSubject: s\r\n',
    );
    const same = Buffer.from('Subject: s\r\n');
    assert.equal(removeOurResults(same, 'mx.test').header, same);
  });
});

describe('the checks policy', () => {
  const base: CheckOutcome = {
    spf: 'fail',
    dkim: ['none'],
    dmarc: 'fail',
    dmarcPolicy: 'reject',
    fromDomain: 'x.test',
  };
  const on = { dmarcReject: true, tempfailOnDnsError: true };
  const off = { dmarcReject: false, tempfailOnDnsError: false };

  test('by default nothing is refused, whatever the results', () => {
    for (const o of [base, { ...base, spf: 'temperror' }, { ...base, dmarc: 'temperror' }])
      assert.equal(decide(o, off), null);
  });

  test('a DMARC failure is refused only under p=reject, with 550 5.7.1', () => {
    assert.deepEqual(decide(base, on), {
      code: 550,
      enhanced: '5.7.1',
      text: 'Message rejected per DMARC policy of x.test',
    });
    assert.equal(decide({ ...base, dmarcPolicy: 'quarantine' }, on), null);
    assert.equal(decide({ ...base, dmarcPolicy: 'none' }, on), null);
    assert.equal(decide({ ...base, dmarc: 'none', dmarcPolicy: undefined }, on), null);
  });

  test('a DNS error that leaves the verdict open is 451: 4.7.24 for SPF, 4.7.1 for DKIM/DMARC; a pass never is', () => {
    assert.equal(decide({ ...base, spf: 'temperror' }, on)?.enhanced, '4.7.24');
    assert.equal(decide({ ...base, dmarc: 'temperror' }, on)?.enhanced, '4.7.1');
    assert.equal(decide({ ...base, dkim: ['pass', 'temperror'] }, on)?.code, 451);
    assert.equal(decide({ ...base, spf: 'temperror', dmarc: 'pass' }, on), null);
  });
});
