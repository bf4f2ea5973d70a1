import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Logger, LogFields } from '../log.js';
import { formatBytes, recoveryProgress, renderBar } from './progress.js';

const MiB = 1024 * 1024;

function capture(): Logger & { lines: Array<{ msg: string; fields: LogFields }> } {
  const lines: Array<{ msg: string; fields: LogFields }> = [];
  const at = (fields: LogFields, msg: string) => void lines.push({ msg, fields });
  const self = {
    lines,
    error: at,
    warn: at,
    info: at,
    debug: at,
    child: () => self,
    isLevelEnabled: () => true,
    flush() {},
  };
  return self;
}

function fakeStream(isTTY: boolean) {
  const out: string[] = [];
  return { isTTY, columns: 100, write: (s: string) => out.push(s), out };
}

describe('recovery progress', () => {
  test('on a terminal, a bar is redrawn in place and replaced by a summary line', () => {
    let now = 0;
    const log = capture();
    const stream = fakeStream(true);
    const p = recoveryProgress({ log, stream, now: () => now });
    p.onProgress(0, 512 * MiB);
    now = 1000;
    p.onProgress(256 * MiB, 512 * MiB);
    now = 2000;
    p.onProgress(512 * MiB, 512 * MiB);
    p.finish();
    assert.equal(stream.out.length, 4);
    assert.match(
      stream.out[1]!,
      /^\rrecovering queue 1 \[#+\.+\] {2}50% 256\.0 MiB\/512\.0 MiB ETA 1s\x1b\[K$/,
    );
    assert.match(stream.out[2]!, /100% 512\.0 MiB\/512\.0 MiB\x1b\[K$/);
    assert.equal(stream.out[3], '\r\x1b[Krecovered 512.0 MiB in 2.0s\n');
    assert.equal(log.lines.length, 0, 'no log lines on a terminal');
  });

  test('redraws at most every 100 ms', () => {
    let now = 0;
    const stream = fakeStream(true);
    const p = recoveryProgress({ log: capture(), stream, now: () => now });
    for (let i = 1; i <= 10; i++) {
      now += 10;
      p.onProgress(i * 64 * MiB, 1024 * MiB);
    }
    assert.equal(stream.out.length, 1);
  });

  test('without a terminal, periodic log lines instead of a bar, and a closing line', () => {
    let now = 0;
    const log = capture();
    const stream = fakeStream(false);
    const p = recoveryProgress({ log, stream, now: () => now, logEveryMs: 5000 });
    for (let i = 1; i <= 16; i++) {
      now += 1000;
      p.onProgress(i * 64 * MiB, 1024 * MiB);
    }
    p.finish();
    assert.equal(stream.out.length, 0, 'nothing written to a non-terminal stream');
    assert.deepEqual(
      log.lines.map((l) => [l.msg, l.fields.percent]),
      [
        ['recovery progress', 31],
        ['recovery progress', 62],
        ['recovery progress', 93],
        ['recovery progress', 100],
        ['recovery finished', undefined],
      ],
    );
    assert.equal(log.lines[4]!.fields.bytes, 1024 * MiB);
  });

  test('a small queue shows nothing at all', () => {
    const log = capture();
    const stream = fakeStream(true);
    const p = recoveryProgress({ log, stream });
    p.onProgress(3 * MiB, 3 * MiB);
    p.finish();
    assert.equal(stream.out.length, 0);
    assert.equal(log.lines.length, 0);
  });

  test('a second queue directory restarts the count and is numbered', () => {
    let now = 0;
    const stream = fakeStream(true);
    const p = recoveryProgress({ log: capture(), stream, now: () => now });
    p.onProgress(100 * MiB, 100 * MiB);
    now = 1000;
    p.onProgress(0, 200 * MiB);
    now = 2000;
    p.onProgress(200 * MiB, 200 * MiB);
    p.finish();
    assert.match(stream.out[1]!, /recovering queue 2 /);
    assert.match(stream.out.at(-1)!, /recovered 300\.0 MiB/);
  });

  test('the bar fits narrow terminals and byte counts are readable', () => {
    const line = renderBar({ done: 1, total: 4, dir: 1, elapsedMs: 0 }, 40);
    assert.match(line, /\[#{3}\.{7}\]/);
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(3 * 1024 * MiB), '3.0 GiB');
  });
});
