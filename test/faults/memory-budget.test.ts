// The memory budget at the SMTP level: the daemon's receiving wiring (Queues with a budget +
// makeServerHooks + SmtpListener, as src/daemon.ts builds it) over an in-memory file system whose
// fdatasyncs can be held back — a disk slower than the network. While the chunks of two large
// messages cannot be made durable, the bytes they hold exceed the budget: a new transaction gets
// 452 4.3.1 at MAIL, the two get no 250, and the server stops reading from them. Once the disk
// catches up, both are acknowledged, the budget drains and MAIL is accepted again.
// Fails: naming the reply that should have been 452 (or 250), or a 250 given too early.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configFromToml } from '../../src/config/index.js';
import type { DnsResolver } from '../../src/delivery/mx.js';
import { Router } from '../../src/delivery/router.js';
import { makeServerHooks } from '../../src/policy/hooks.js';
import { MemoryBudget } from '../../src/queue/data/budget.js';
import { IdSource } from '../../src/queue/ids.js';
import type { QueueFile, QueueFs } from '../../src/queue/log/fs.js';
import { Queues } from '../../src/queue/queues.js';
import { SmtpListener } from '../../src/smtp/server/listener.js';
import { codeOf, SmtpChat, waitFor } from '../support/daemon.js';
import { MemQueueFs } from '../support/memfs.js';
import { internals } from '../../src/queue/queue.js';

const noDns: DnsResolver = {
  resolveMx: async () => [],
  resolve4: async () => [],
  resolve6: async () => [],
  resolveTxt: async () => [],
  resolvePtr: async () => [],
};

/** A MemQueueFs whose fdatasyncs wait while `held` (they complete, in order, once released). */
class SlowDisk implements QueueFs {
  readonly mem = new MemQueueFs();
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  waiting = 0;

  hold(): void {
    this.gate = new Promise((r) => (this.open = r));
  }

  release(): void {
    this.open?.();
    this.gate = undefined;
  }

  private file(f: QueueFile): QueueFile {
    return {
      write: (bufs, pos) => f.write(bufs, pos),
      datasync: async () => {
        while (this.gate) {
          this.waiting++;
          await this.gate;
          this.waiting--;
        }
        return f.datasync();
      },
      close: () => f.close(),
    };
  }

  mkdirp = (p: string) => this.mem.mkdirp(p);
  readdir = (p: string) => this.mem.readdir(p);
  create = async (p: string) => this.file(await this.mem.create(p));
  openWrite = async (p: string) => this.file(await this.mem.openWrite(p));
  readFile = (p: string) => this.mem.readFile(p);
  read = (p: string, pos: number, len: number) => this.mem.read(p, pos, len);
  truncate = (p: string, len: number) => this.mem.truncate(p, len);
  unlink = (p: string) => this.mem.unlink(p);
  rename = (a: string, b: string) => this.mem.rename(a, b);
  syncDir = (p: string) => this.mem.syncDir(p);
  size = (p: string) => this.mem.size(p);
}

async function startData(port: number, n: number): Promise<SmtpChat> {
  const c = await SmtpChat.connect(port);
  await c.read(1);
  assert.deepEqual(
    (
      await c.ask(`EHLO big${n}.test\r\nMAIL FROM:<a@big.test>\r\nRCPT TO:<b${n}@localhost>\r\nDATA\r\n`, 4)
    ).map(codeOf),
    ['250', '250 2.1.0', '250 2.1.5', '354'],
  );
  return c;
}

test('over the memory budget new transactions get 452 4.3.1 until it drains; no 250 before the data is durable', async () => {
  const config = configFromToml('hostname = "mx.test"\ndata_dir = "/mem"\n[[local]]\ndomain = "localhost"', {
    baseDir: '/',
  });
  const disk = new SlowDisk();
  const ids = new IdSource(() => Date.now());
  const budget = new MemoryBudget(3 * 1024 * 1024);
  const queues = await Queues.open(['/mem/queue'], { fs: disk, ids, budget, segmentSize: 64 * 1024 * 1024 });
  const listener = new SmtpListener(
    { hostname: 'mx.test', maxMessageSize: 64 * 1024 * 1024 },
    makeServerHooks(config, new Router(config, noDns), queues, ids),
  );
  const port = (await listener.listen(0, '127.0.0.1')).port;
  try {
    disk.hold();
    const a = await startData(port, 1);
    const b = await startData(port, 2);
    const line = `${'m'.repeat(78)}\r\n`;
    const body = line.repeat(Math.ceil((2.5 * 1024 * 1024) / line.length));
    a.send(`Subject: a\r\n\r\n${body}`);
    b.send(`Subject: b\r\n\r\n${body}`);
    // Their first chunks wait for the disk; what arrives after them stays in memory.
    await waitFor(() => budget.over, 'the budget to be exceeded', 20_000);
    const c = await SmtpChat.connect(port);
    await c.read(1);
    const refused = await c.ask('EHLO third.test\r\nMAIL FROM:<x@y.test>\r\n', 2);
    assert.equal(codeOf(refused[1]!), '452 4.3.1', `MAIL while over the budget: ${refused[1]}`);
    assert.ok(budget.used <= budget.limit + 4 * 1024 * 1024, `held ${budget.used} bytes`);

    // The end of both messages: no 250 while their data is not durable.
    a.send('.\r\n');
    b.send('.\r\n');
    await new Promise((r) => setTimeout(r, 200));
    const early = await a.read(1, 100).catch(() => []);
    assert.deepEqual(early, [], 'a reply before the data was durable');
    disk.release();
    assert.match((await a.read(1, 20_000))[0] ?? '', /^250 2\.0\.0 /);
    assert.match((await b.read(1, 20_000))[0] ?? '', /^250 2\.0\.0 /);
    await waitFor(() => !budget.over, 'the budget to drain', 10_000);
    assert.equal(codeOf((await c.ask('MAIL FROM:<x@y.test>\r\n'))[0]!), '250 2.1.0');
    assert.equal(internals(queues.list[0]!).core.msgs.count, 2);
    for (const x of [a, b, c]) x.close();
  } finally {
    disk.release();
    await listener.stop(100);
    await queues.stop().catch(() => {});
  }
});
