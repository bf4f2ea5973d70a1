// The timer helper: delays beyond setTimeout's 24.8-day limit neither spin nor fire early.
import assert from 'node:assert/strict';
import { describe, mock, test } from 'node:test';
import { MAX_TIMER_MS, setTimer } from './clock.js';

const DAY = 86_400_000;

describe('setTimer', () => {
  test('a 30-day timer does not fire after 1 ms and raises no TimeoutOverflowWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    let fired = 0;
    const cancel = setTimer(30 * DAY, () => fired++);
    // Node would have fired an overflowing timer after 1 ms; give it plenty of turns.
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 5));
    cancel();
    process.off('warning', onWarning);
    assert.equal(fired, 0);
    assert.deepEqual(warnings, []);
  });

  test('a delay longer than one setTimeout is waited out in steps and fires once, on time', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let fired = 0;
      setTimer(40 * DAY, () => fired++);
      mock.timers.tick(MAX_TIMER_MS);
      assert.equal(fired, 0, 'fired after one step of 24.8 days');
      mock.timers.tick(40 * DAY - MAX_TIMER_MS - 1);
      assert.equal(fired, 0, 'fired 1 ms early');
      mock.timers.tick(1);
      assert.equal(fired, 1);
      mock.timers.tick(100 * DAY);
      assert.equal(fired, 1, 'fired again');
    } finally {
      mock.timers.reset();
    }
  });

  test('cancel works in any step; negative and NaN delays mean now', () => {
    mock.timers.enable({ apis: ['setTimeout'] });
    try {
      let fired = 0;
      const cancel = setTimer(60 * DAY, () => fired++);
      mock.timers.tick(MAX_TIMER_MS + 1000);
      cancel();
      mock.timers.tick(100 * DAY);
      assert.equal(fired, 0);
      setTimer(-5, () => fired++);
      setTimer(Number.NaN, () => fired++);
      mock.timers.tick(0);
      assert.equal(fired, 2);
    } finally {
      mock.timers.reset();
    }
  });
});
