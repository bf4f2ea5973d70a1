// A strict reader over one parsed TOML table: typed getters that record a problem (key path
// + what was wrong) instead of throwing, and a finish() that reports every key nobody asked
// for. The loader reads the whole file through it, so all problems surface in one pass.
// Invariant: a getter returns undefined both for "absent" and for "invalid" — the latter
// always leaves a problem behind, so a config with any invalid key is never returned.
// Positions in lists are numbered from 1 in messages ("route[2].host" is the second route).

import { isMtaError } from '../errors.js';
import {
  describeValue,
  formatDuration,
  formatSize,
  MAX_DURATION_MS,
  parseDuration,
  parseSize,
} from './units.js';

/** The problems found so far, each "source: key.path: message". */
export class Problems {
  readonly list: string[] = [];
  constructor(readonly source: string) {}
  add(path: string, message: string): void {
    this.list.push(path === '' ? `${this.source}: ${message}` : `${this.source}: ${path}: ${message}`);
  }
  /** Runs a parser that throws MtaError('CONFIG_VALUE'); records its message under `path`. */
  parse<T>(path: string, fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      if (isMtaError(e) && (e.code === 'CONFIG_VALUE' || e.code === 'CONFIG_INVALID')) {
        this.add(path, e.message);
        return undefined;
      }
      throw e;
    }
  }
}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

export class Section {
  private readonly seen = new Set<string>();

  constructor(
    readonly problems: Problems,
    /** Path of this table ("" for the root, "smtp", "route[2]"). */
    readonly path: string,
    private readonly obj: Table,
  ) {}

  /** Full path of a key of this table, for messages. */
  key(k: string): string {
    return this.path === '' ? k : `${this.path}.${k}`;
  }

  has(k: string): boolean {
    return Object.hasOwn(this.obj, k);
  }

  /** The raw value (marking the key as known). */
  raw(k: string): unknown {
    this.seen.add(k);
    return Object.hasOwn(this.obj, k) ? this.obj[k] : undefined;
  }

  problem(k: string, message: string): void {
    this.problems.add(this.key(k), message);
  }

  private expect(k: string, expected: string, got: unknown): undefined {
    this.problem(k, `expected ${expected}, got ${describeValue(got)}`);
    return undefined;
  }

  string(k: string, opts: { oneOf?: readonly string[] } = {}): string | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') return this.expect(k, 'a non-empty string', v);
    if (opts.oneOf && !opts.oneOf.includes(v)) {
      return this.expect(k, `one of ${opts.oneOf.map((o) => JSON.stringify(o)).join(', ')}`, v);
    }
    return v;
  }

  bool(k: string): boolean | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') return this.expect(k, 'true or false', v);
    return v;
  }

  positiveInt(k: string): number | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      return this.expect(k, 'a positive integer', v);
    }
    return v;
  }

  /** An integer of at least zero. */
  nonNegativeInt(k: string): number | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      return this.expect(k, 'an integer of at least 0', v);
    }
    return v;
  }

  /** Milliseconds; zero only when allowed. */
  duration(k: string, opts: { allowZero?: boolean } = {}): number | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    return this.durationValue(this.key(k), v, opts);
  }

  durationValue(path: string, v: unknown, opts: { allowZero?: boolean } = {}): number | undefined {
    if (typeof v !== 'string' && typeof v !== 'number') {
      this.problems.add(path, `expected a duration like "30s", "5m", "1h" or "5d", got ${describeValue(v)}`);
      return undefined;
    }
    const ms = this.problems.parse(path, () => parseDuration(v));
    if (ms === 0 && !opts.allowZero) {
      this.problems.add(path, `expected a duration greater than zero, got ${describeValue(v)}`);
      return undefined;
    }
    if (ms !== undefined && ms > MAX_DURATION_MS) {
      this.problems.add(
        path,
        `expected a duration of at most ${formatDuration(MAX_DURATION_MS)}, got ${describeValue(v)}`,
      );
      return undefined;
    }
    return ms;
  }

  /** Bytes, at least `min` (default 1) and at most `max` when given (`why` says what bounds it). */
  size(k: string, min = 1, max?: { bytes: number; why: string }): number | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' && typeof v !== 'number') {
      return this.expect(k, 'a size like "1024", "10MB" or "50MiB"', v);
    }
    const n = this.problems.parse(this.key(k), () => parseSize(v));
    if (n !== undefined && n < min) return this.expect(k, `a size of at least ${min} bytes`, v);
    if (n !== undefined && max !== undefined && n > max.bytes)
      return this.expect(k, `a size of at most ${formatSize(max.bytes)} (${max.why})`, v);
    return n;
  }

  /** An array whose elements are all strings; `allowSingle` also accepts one bare string. */
  stringList(k: string, opts: { allowSingle?: boolean; nonEmpty?: boolean } = {}): string[] | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (opts.allowSingle && typeof v === 'string') return [v];
    const what = opts.allowSingle ? 'a string or an array of strings' : 'an array of strings';
    if (!Array.isArray(v)) return this.expect(k, what, v);
    const bad = v.findIndex((e) => typeof e !== 'string' || e === '');
    if (bad >= 0) {
      this.problems.add(
        `${this.key(k)}[${bad + 1}]`,
        `expected a non-empty string, got ${describeValue(v[bad])}`,
      );
      return undefined;
    }
    if (opts.nonEmpty && v.length === 0) return this.expect(k, 'at least one entry', v);
    return v as string[];
  }

  /** Parses each string of a list with `fn`; an element error names its position. */
  listOf<T>(
    k: string,
    fn: (s: string) => T,
    opts: { allowSingle?: boolean; nonEmpty?: boolean } = {},
  ): T[] | undefined {
    const list = this.stringList(k, opts);
    if (list === undefined) return undefined;
    const out: T[] = [];
    let ok = true;
    list.forEach((s, i) => {
      const path = Array.isArray(this.raw(k)) ? `${this.key(k)}[${i + 1}]` : this.key(k);
      const r = this.problems.parse(path, () => fn(s));
      if (r === undefined) ok = false;
      else out.push(r);
    });
    return ok ? out : undefined;
  }

  /** Parses one string value with `fn`. */
  map<T>(k: string, fn: (s: string) => T): T | undefined {
    const s = this.string(k);
    if (s === undefined) return undefined;
    return this.problems.parse(this.key(k), () => fn(s));
  }

  /** Like map(), but a missing key is a problem ("required", or the given text). */
  required<T>(k: string, fn: (s: string) => T, what = 'required'): T | undefined {
    if (this.has(k)) return this.map(k, fn);
    this.seen.add(k);
    this.problem(k, what);
    return undefined;
  }

  /** A sub-table ([smtp]); undefined when absent or not a table. */
  table(k: string): Section | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (!isTable(v)) return this.expect(k, `a table ([${this.key(k)}])`, v);
    return new Section(this.problems, this.key(k), v);
  }

  /** An array of tables ([[route]]); undefined when absent. */
  tables(k: string): Section[] | undefined {
    const v = this.raw(k);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || !v.every(isTable))
      return this.expect(k, `an array of tables ([[${this.key(k)}]])`, v);
    return v.map((t, i) => new Section(this.problems, `${this.key(k)}[${i + 1}]`, t));
  }

  /** Reports every key of the table that no getter asked for. */
  finish(): void {
    const known = [...this.seen];
    for (const k of Object.keys(this.obj)) {
      if (this.seen.has(k)) continue;
      const near = known
        .map((c) => [c, distance(k, c)] as const)
        .filter(([, d]) => d <= 2 && d * 2 < k.length)
        .sort((a, b) => a[1] - b[1])[0];
      this.problem(k, near ? `unknown key (did you mean "${near[0]}"?)` : 'unknown key');
    }
  }
}
