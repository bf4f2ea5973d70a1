import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuthThrottle } from './auth-throttle.js';
import { FakeClock } from '../../../test/support/clock.js';

describe('AuthThrottle', () => {
  test('delays double per failure up to the cap and block after maxFailures', () => {
    const c = new FakeClock();
    const t = new AuthThrottle(c, { maxFailures: 4, baseDelayMs: 100, maxDelayMs: 300, blockMs: 1000 });
    assert.deepEqual(t.failure('a'), { delayMs: 100, blocked: false });
    assert.deepEqual(t.failure('a'), { delayMs: 200, blocked: false });
    assert.deepEqual(t.failure('a'), { delayMs: 300, blocked: false });
    assert.equal(t.isBlocked('a'), false);
    assert.deepEqual(t.failure('a'), { delayMs: 300, blocked: true });
    assert.equal(t.isBlocked('a'), true);
    assert.equal(t.isBlocked('b'), false);
    c.advance(1001);
    assert.equal(t.isBlocked('a'), false);
  });
  test('success clears an IP, sweep forgets old entries', () => {
    const c = new FakeClock();
    const t = new AuthThrottle(c, { forgetMs: 1000, blockMs: 10 });
    t.failure('a');
    t.failure('b');
    t.success('a');
    assert.equal(t.size, 1);
    c.advance(2000);
    t.sweep();
    assert.equal(t.size, 0);
    assert.deepEqual(t.failure('b'), { delayMs: 1000, blocked: false });
  });
});
