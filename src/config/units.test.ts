// Tests of the duration and size parsers: every unit, plain integers, and refusals.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatDuration, parseDuration, parseSize } from './units.js';

describe('parseDuration', () => {
  test('reads each unit into milliseconds', () => {
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('30s'), 30_000);
    assert.equal(parseDuration('5m'), 300_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('5d'), 432_000_000);
    assert.equal(parseDuration('2w'), 1_209_600_000);
  });
  test('a plain integer means seconds, as a number or as digits', () => {
    assert.equal(parseDuration(90), 90_000);
    assert.equal(parseDuration('90'), 90_000);
    assert.equal(parseDuration(0), 0);
  });
  test('combines parts and accepts fractions', () => {
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('1h 30m'), 5_400_000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('5M'), 300_000);
  });
  test('refuses anything else with a message naming the input', () => {
    for (const bad of ['', 'abc', '5x', '-5s', 's', '5m x', '1e3s']) {
      assert.throws(
        () => parseDuration(bad),
        (e: Error & { code?: string }) =>
          e.code === 'CONFIG_VALUE' && e.message.includes(JSON.stringify(bad)),
        bad,
      );
    }
    assert.throws(() => parseDuration(-1), /expected a duration/);
    assert.throws(() => parseDuration(1.5), /expected a duration/);
  });
  test('formatDuration prints the largest exact unit', () => {
    assert.equal(formatDuration(300_000), '5m');
    assert.equal(formatDuration(90_000), '90s');
    assert.equal(formatDuration(1500), '1500ms');
    assert.equal(formatDuration(432_000_000), '5d');
  });
});

describe('parseSize', () => {
  test('binary and decimal units differ', () => {
    assert.equal(parseSize('50MiB'), 50 * 1024 * 1024);
    assert.equal(parseSize('10MB'), 10_000_000);
    assert.equal(parseSize('1KiB'), 1024);
    assert.equal(parseSize('1kb'), 1000);
    assert.equal(parseSize('2GiB'), 2 * 1024 ** 3);
    assert.equal(parseSize('64B'), 64);
  });
  test('a plain integer means bytes', () => {
    assert.equal(parseSize('1024'), 1024);
    assert.equal(parseSize(1024), 1024);
  });
  test('refuses unknown units, negatives and fractions of bare numbers', () => {
    for (const bad of ['5 parsecs', '-1', 'MiB', '1.5', '10 MiB extra']) {
      assert.throws(() => parseSize(bad), /expected a size/, bad);
    }
    assert.throws(() => parseSize(-1), /expected a size/);
  });
});
