import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MtaError } from '../errors.js';
import type { MxCandidate } from './mx.js';
import { greetsAs, SelfAddresses, withoutSelf } from './self.js';

const cand = (host: string, preference: number, port = 25): MxCandidate => ({ host, port, preference });

describe('SelfAddresses', () => {
  test('an exact listener is this host at its address and port only', () => {
    const s = new SelfAddresses(() => ['192.0.2.7']);
    s.add('127.0.0.9', 25);
    assert.ok(s.has('127.0.0.9', 25));
    assert.ok(s.has('::ffff:127.0.0.9', 25), 'IPv4-mapped counts as IPv4');
    assert.ok(!s.has('127.0.0.9', 2525));
    assert.ok(!s.has('127.0.0.1', 25));
    assert.ok(!s.has('192.0.2.7', 25));
  });

  test('a wildcard listener is this host on every interface address, loopback included', () => {
    const s = new SelfAddresses(() => ['192.0.2.7', 'fe80::1']);
    s.add('0.0.0.0', 25);
    s.add('[::]', 587);
    assert.ok(s.has('192.0.2.7', 25));
    assert.ok(s.has('127.3.4.5', 25));
    assert.ok(s.has('::1', 587));
    assert.ok(s.has('FE80::1', 587));
    assert.ok(s.has('0.0.0.0', 25), 'connecting to 0.0.0.0 reaches the local host');
    assert.ok(s.has('::', 587));
    assert.ok(!s.has('198.51.100.1', 25));
    assert.ok(!s.has('192.0.2.7', 26));
  });

  test('port 0 (not bound yet) is nobody', () => {
    const s = new SelfAddresses(() => []);
    s.add('127.0.0.1', 0);
    assert.ok(!s.has('127.0.0.1', 0));
  });
});

describe('withoutSelf (RFC 5321 §5.1)', () => {
  const isSelf = (h: string) => h === '10.0.0.2';

  test('drops this host and every MX of its preference or worse, keeps the better ones', () => {
    const left = withoutSelf(
      'd.test',
      [cand('10.0.0.1', 10), cand('10.0.0.3', 20), cand('10.0.0.2', 20), cand('10.0.0.4', 30)],
      isSelf,
    );
    assert.deepEqual(
      left.map((c) => c.host),
      ['10.0.0.1'],
    );
  });

  test('an MX list without this host is kept as it is', () => {
    const list = [cand('10.0.0.1', 10), cand('10.0.0.3', 20)];
    assert.equal(withoutSelf('d.test', list, isSelf), list);
  });

  test('this host as the best MX (or as implicit MX) is a permanent 554 5.4.6 loop', () => {
    for (const list of [[cand('10.0.0.2', 10), cand('10.0.0.1', 20)], [cand('10.0.0.2', -1)]]) {
      assert.throws(
        () => withoutSelf('d.test', list, isSelf),
        (e: unknown) =>
          e instanceof MtaError &&
          e.code === 'MX_LOOP' &&
          e.kind === 'permanent' &&
          e.smtp?.code === 554 &&
          e.smtp.enhanced === '5.4.6' &&
          /loops back to myself/.test(e.message),
      );
    }
  });
});

describe('greetsAs', () => {
  test('the first word of the greeting, compared without case', () => {
    assert.ok(greetsAs('Relay.Test ESMTP logmta', 'relay.test'));
    assert.ok(greetsAs('relay.test', 'relay.test'));
    assert.ok(!greetsAs('mx.relay.test ESMTP', 'relay.test'));
    assert.ok(!greetsAs('ESMTP relay.test', 'relay.test'));
    assert.ok(!greetsAs(undefined, 'relay.test'));
    assert.ok(!greetsAs('', 'relay.test'));
  });
});
