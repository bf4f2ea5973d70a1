// The real file system's read-descriptor cache, measured where it matters: the descriptors this
// process holds (/proc/self/fd). One test per leak: concurrent misses on one file, more files
// than the cache holds, unlinked and renamed segments, a stopped queue.
import assert from 'node:assert/strict';
import {
  constants,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { NodeQueueFs, type QueueFile } from './fs.js';

const linux = process.platform === 'linux';
const dir = mkdtempSync(join(tmpdir(), 'logmta-fds-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Descriptors of this process open on files under `dir` (deleted ones included). */
function fdsUnder(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)) n++;
    } catch {
      // closed while we looked
    }
  }
  return n;
}

/** Closes happen in libuv's thread pool: wait until the count settles at or below `max`. */
async function settlesAtMost(max: number, what: string): Promise<number> {
  const end = Date.now() + 5_000;
  let n = fdsUnder();
  while (n > max && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 10));
    n = fdsUnder();
  }
  assert.ok(n <= max, `${what}: ${n} descriptors open under the queue dir, expected at most ${max}`);
  return n;
}

function file(name: string, size = 4096): string {
  const p = join(dir, name);
  writeFileSync(p, Buffer.alloc(size, 7));
  return p;
}

describe('read descriptors of the queue', { skip: linux ? false : 'needs /proc/self/fd (Linux)' }, () => {
  test('concurrent reads of one uncached file open it once and keep one descriptor', async () => {
    const fs = new NodeQueueFs();
    const p = file('one.seg');
    assert.equal(fdsUnder(), 0);
    const bufs = await Promise.all(Array.from({ length: 500 }, (_, i) => fs.read(p, i, 8)));
    assert.equal(bufs.length, 500);
    await settlesAtMost(1, 'after 500 concurrent reads of one file');
    fs.closeHandles();
    await settlesAtMost(0, 'after closeHandles');
  });

  test('reads of more files than the cache holds keep at most the bound open', async () => {
    const fs = new NodeQueueFs({ maxReadHandles: 16 });
    const paths = Array.from({ length: 200 }, (_, i) => file(`many-${i}.seg`, 64));
    // Every file read by several readers at once, all files at once.
    await Promise.all(paths.flatMap((p) => [fs.read(p, 0, 8), fs.read(p, 8, 8), fs.read(p, 16, 8)]));
    await settlesAtMost(16, 'after reading 200 files');
    for (const p of paths) await fs.read(p, 0, 8);
    await settlesAtMost(16, 'after reading them one by one');
    fs.closeHandles();
    await settlesAtMost(0, 'after closeHandles');
  });

  test('an unlinked or renamed segment keeps no descriptor, even with reads in flight', async () => {
    const fs = new NodeQueueFs();
    const a = file('gone.seg', 1 << 20);
    const b = file('moved.seg', 1 << 20);
    const reads = [
      ...Array.from({ length: 50 }, () => fs.read(a, 4096, 65536)),
      ...Array.from({ length: 50 }, () => fs.read(b, 4096, 65536)),
    ];
    const unlink = fs.unlink(a);
    const rename = fs.rename(b, join(dir, 'moved-away.seg'));
    await Promise.all([...reads, unlink, rename]);
    await settlesAtMost(0, 'after unlink and rename');
    // Reading the renamed file under its new name works and is cached under that name.
    assert.equal((await fs.read(join(dir, 'moved-away.seg'), 0, 4)).length, 4);
    await fs.unlink(join(dir, 'moved-away.seg'));
    await settlesAtMost(0, 'after unlinking the renamed file');
    // A deleted segment held open would still show as "(deleted)" and pin its blocks.
    assert.ok(
      !readdirSync('/proc/self/fd').some((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).includes('(deleted)');
        } catch {
          return false;
        }
      }),
      'a descriptor on a deleted file is still open',
    );
  });

  test('a failed open is not cached and leaks nothing', async () => {
    const fs = new NodeQueueFs();
    const missing = join(dir, 'missing.seg');
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => fs.read(missing, 0, 1)));
    assert.ok(results.every((r) => r.status === 'rejected'));
    file('missing.seg');
    assert.equal((await fs.read(missing, 0, 4)).length, 4, 'the file is readable once it exists');
    fs.closeHandles();
    await settlesAtMost(0, 'after closeHandles');
  });
});

/** The open flags of this process's descriptors on `path` (/proc/self/fdinfo), octal as the kernel prints them. */
function openFlags(path: string): number[] {
  const out: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== path) continue;
      const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      if (m) out.push(Number.parseInt(m[1]!, 8));
    } catch {
      // closed while we looked
    }
  }
  return out;
}

describe('durable writes', { skip: linux ? false : 'reads /proc/self/fdinfo' }, () => {
  test('a segment opened for durable writes has O_DSYNC (each write is its own fdatasync); one opened otherwise has not', async () => {
    const fs = new NodeQueueFs();
    for (const durable of [true, false]) {
      const path = join(dir, `dsync-${durable}.seg`);
      // The file as the call opened it: the flag it reports, and the one the kernel has.
      const check = async (how: 'create' | 'openWrite'): Promise<QueueFile> => {
        const f = await (how === 'create' ? fs.create(path, durable) : fs.openWrite(path, durable));
        assert.equal(f.writesDurable, durable, `${how}(durable=${durable}).writesDurable`);
        const dsync = openFlags(path).map((x) => (x & constants.O_DSYNC) !== 0);
        assert.deepEqual(dsync, [durable], `${how}(durable=${durable}): O_DSYNC`);
        return f;
      };
      const created = await check('create');
      await created.write([Buffer.from('header')], 0);
      await created.close();
      await (await check('openWrite')).close();
    }
  });
});
