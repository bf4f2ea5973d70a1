// Pure parsers for the units the configuration speaks: durations and sizes.
// Invariant: every result is a non-negative safe integer (milliseconds or bytes); anything
// that is not exactly one of the documented forms is refused, never guessed.
// Failure: a MtaError code 'CONFIG_VALUE' (permanent) whose message says what was expected
// and what was given; the loader prefixes it with the key path.

import { MtaError } from '../errors.js';

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1000,
  kb: 1000,
  kib: 1024,
  m: 1000 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1000 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1000 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/** Quotes a value for an error message: strings JSON-quoted, tables and arrays named. */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 57) + '...' : v);
  if (Array.isArray(v)) return 'an array';
  if (v === null || v === undefined) return 'nothing';
  if (typeof v === 'object') return v instanceof Date ? 'a date' : 'a table';
  return String(v);
}

export function valueError(expected: string, got: unknown): MtaError {
  return new MtaError('CONFIG_VALUE', 'permanent', `expected ${expected}, got ${describeValue(got)}`);
}

function parseUnits(
  input: string | number,
  units: Record<string, number>,
  bareMultiplier: number,
  expected: string,
): number {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) throw valueError(expected, input);
    const r = input * bareMultiplier;
    if (!Number.isSafeInteger(r)) throw valueError(expected, input);
    return r;
  }
  const s = input.trim();
  if (/^\d+$/.test(s)) return parseUnits(Number(s), units, bareMultiplier, expected);
  // One or more "<number><unit>" parts, e.g. "1h30m"; whitespace between parts is allowed.
  const part = /(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*/y;
  let total = 0;
  let pos = 0;
  let parts = 0;
  while (pos < s.length) {
    part.lastIndex = pos;
    const m = part.exec(s);
    if (!m) throw valueError(expected, input);
    const unit = units[m[2]!.toLowerCase()];
    if (unit === undefined) throw valueError(expected, input);
    total += Number(m[1]) * unit;
    pos = part.lastIndex;
    parts++;
  }
  if (parts === 0) throw valueError(expected, input);
  const r = Math.round(total);
  if (!Number.isSafeInteger(r)) throw valueError(expected, input);
  return r;
}

/**
 * A duration in milliseconds: "250ms", "30s", "5m", "1h", "5d", "2w", combinations like
 * "1h30m", or a plain integer (a number or a digit string) meaning seconds.
 */
export function parseDuration(input: string | number): number {
  return parseUnits(input, DURATION_UNITS, 1000, 'a duration like "30s", "5m", "1h" or "5d"');
}

/**
 * A size in bytes: "1024", "10KB"/"10KiB", "10MB" (10^7) / "50MiB" (50*2^20), "1GiB", ...;
 * units are case-insensitive, a plain integer means bytes.
 */
export function parseSize(input: string | number): number {
  return parseUnits(input, SIZE_UNITS, 1, 'a size like "1024", "10MB" or "50MiB"');
}

/** The period words of a rate ("100/s", "6000/min", "60/hour"), in milliseconds. */
export const RATE_PERIODS: Readonly<Record<string, number>> = {
  s: 1_000,
  sec: 1_000,
  second: 1_000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hr: 3_600_000,
  hour: 3_600_000,
  d: 86_400_000,
  day: 86_400_000,
};

/**
 * The longest duration any key accepts: a year. Longer values are mistakes (a unit slipped),
 * and bounding them keeps `now + duration` a valid date everywhere it is used.
 */
export const MAX_DURATION_MS = 365 * 86_400_000;

/** Formats bytes in the largest exact binary unit ("256MiB", "1GiB", "4096"), for messages. */
export function formatSize(bytes: number): string {
  for (const [unit, mult] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  return String(bytes);
}

/** Formats milliseconds back to the largest exact unit ("5m", "90s", "1500ms"), for messages. */
export function formatDuration(ms: number): string {
  for (const [unit, mult] of [
    ['w', 604_800_000],
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= mult && ms % mult === 0) return `${ms / mult}${unit}`;
  }
  return `${ms}ms`;
}
