// Which policy applies when (RFC 8461 §5.1), with a table resolver, a fake clock, a scripted
// fetch and the cache file in a temp dir: fetched once per id, kept through DNS and fetch
// failures until it expires, carried over a restart, and a corrupt cache file only logged.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { FakeClock } from '../../../test/support/clock.js';
import { makeTempDir } from '../../../test/support/daemon.js';
import { captureLogger, type LogLine } from '../../../test/support/log.js';
import { StaticResolver, type StaticRecords } from '../../../test/support/static-resolver.js';
import type { DnsErrorCode } from '../../dns/types.js';
import { StsPolicies } from './policies.js';
import { PolicyStore, STORE_FILE } from './store.js';

const policy = (mode: string, maxAge = 86_400) =>
  `version: STSv1\nmode: ${mode}\nmx: mx.dst.test\nmax_age: ${maxAge}\n`;

function world(dir = makeTempDir('logmta-sts-')) {
  const table: Record<string, StaticRecords | DnsErrorCode> = {};
  const resolver = new StaticResolver(table);
  const clock = new FakeClock();
  const lines: LogLine[] = [];
  const served: { text: string | Error } = { text: policy('enforce') };
  const fetched: string[] = [];
  const make = () =>
    new StsPolicies({
      resolver,
      clock,
      fetch: async (d) => {
        fetched.push(d);
        if (served.text instanceof Error) throw served.text;
        return served.text;
      },
      store: new PolicyStore(dir, (f, m) => lines.push({ level: 'warn', msg: m, fields: f })),
      log: captureLogger(lines),
    });
  const txt = (id: string | DnsErrorCode) => {
    table['_mta-sts.dst.test'] = id.startsWith('E') ? (id as DnsErrorCode) : { TXT: [`v=STSv1; id=${id}`] };
  };
  return { dir, table, clock, lines, served, fetched, make, txt };
}

/** Waits until the cache file holds `n` policies (saves are asynchronous). */
async function saved(dir: string, n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const doc = JSON.parse(readFileSync(`${dir}/${STORE_FILE}`, 'utf8'));
      if (Object.keys(doc.policies).length === n) return;
    } catch {
      // not written yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`cache file never held ${n} policies`);
}

describe('MTA-STS policy discovery and cache (RFC 8461 §5.1)', () => {
  test('no TXT record: no policy, nothing fetched', async () => {
    const w = world();
    const a = await w.make().policyFor('dst.test');
    assert.deepEqual([a.mode, a.source, w.fetched.length], ['none', 'none', 0]);
  });

  test('a TXT record: the policy is fetched once, then served from the cache while the id stays', async () => {
    const w = world();
    w.txt('a1');
    const s = w.make();
    const first = await s.policyFor('dst.test');
    assert.deepEqual([first.mode, first.id, first.source], ['enforce', 'a1', 'fetched']);
    const again = await Promise.all([s.policyFor('dst.test'), s.policyFor('dst.test')]);
    assert.deepEqual(
      again.map((a) => a.source),
      ['cache', 'cache'],
    );
    assert.equal(w.fetched.length, 1);
  });

  test('lookups of one domain at the same time share one fetch', async () => {
    const w = world();
    w.txt('a1');
    const s = w.make();
    const all = await Promise.all([1, 2, 3, 4].map(() => s.policyFor('dst.test')));
    assert.ok(all.every((a) => a.mode === 'enforce'));
    assert.equal(w.fetched.length, 1);
  });

  test('a new TXT id fetches the policy again', async () => {
    const w = world();
    w.txt('a1');
    const s = w.make();
    await s.policyFor('dst.test');
    w.txt('a2');
    w.served.text = policy('testing');
    const a = await s.policyFor('dst.test');
    assert.deepEqual([a.mode, a.id, w.fetched.length], ['testing', 'a2', 2]);
  });

  test('a failed fetch for a new id keeps the cached policy, and is not repeated at once', async () => {
    const w = world();
    w.txt('a1');
    const s = w.make();
    await s.policyFor('dst.test');
    w.txt('a2');
    w.served.text = new Error('connection refused');
    const a = await s.policyFor('dst.test');
    assert.deepEqual([a.mode, a.id, a.source], ['enforce', 'a1', 'cache']);
    await s.policyFor('dst.test');
    assert.equal(w.fetched.length, 2, 'the second lookup did not fetch again');
    assert.ok(w.lines.some((l) => l.msg === 'MTA-STS policy fetch failed'));
    w.clock.advance(300_000);
    await s.policyFor('dst.test');
    assert.equal(w.fetched.length, 3, 'after retryFetchMs it tries again');
  });

  test('a TXT record gone, or a lookup that fails, keeps the cached policy', async () => {
    const w = world();
    w.txt('a1');
    const s = w.make();
    await s.policyFor('dst.test');
    for (const e of ['ENOTFOUND', 'ESERVFAIL'] as const) {
      w.txt(e);
      const a = await s.policyFor('dst.test');
      assert.deepEqual([a.mode, a.source], ['enforce', 'cache'], e);
    }
  });

  test('no cache and a failed fetch: no policy (delivery as without MTA-STS)', async () => {
    const w = world();
    w.txt('a1');
    w.served.text = 'not a policy';
    const a = await w.make().policyFor('dst.test');
    assert.equal(a.mode, 'none');
  });

  test('a cached policy expires after max_age; then a fetch is needed again', async () => {
    const w = world();
    w.txt('a1');
    w.served.text = policy('enforce', 60);
    const s = w.make();
    await s.policyFor('dst.test');
    w.clock.advance(61_000);
    w.txt('ESERVFAIL');
    assert.equal((await s.policyFor('dst.test')).mode, 'none', 'expired: no longer applied');
  });

  test('a policy in use for longer than a day is fetched again in the background', async () => {
    const w = world();
    w.txt('a1');
    w.served.text = policy('enforce', 604_800);
    const s = w.make();
    await s.policyFor('dst.test');
    w.clock.advance(86_400_000);
    assert.equal((await s.policyFor('dst.test')).source, 'cache');
    await new Promise((r) => setImmediate(r));
    assert.equal(w.fetched.length, 2);
  });

  test('the cache survives a restart: the policy applies with its policy server and DNS gone', async () => {
    const w = world();
    w.txt('a1');
    await w.make().policyFor('dst.test');
    await saved(w.dir, 1);
    w.txt('a2');
    w.served.text = new Error('down');
    const a = await w.make().policyFor('dst.test');
    assert.deepEqual([a.mode, a.id, a.source], ['enforce', 'a1', 'cache']);
  });

  test('a corrupt cache file is logged and ignored', async () => {
    const w = world();
    writeFileSync(`${w.dir}/${STORE_FILE}`, '{"version":1,"policies":{"dst.test":');
    w.txt('a1');
    const a = await w.make().policyFor('dst.test');
    assert.equal(a.source, 'fetched');
    assert.ok(w.lines.some((l) => l.msg === 'MTA-STS policy cache corrupt: starting without it'));
    await saved(w.dir, 1);
  });

  test('cache entries that are no policy are logged and skipped, the others kept', async () => {
    const w = world();
    const now = w.clock.now();
    writeFileSync(
      `${w.dir}/${STORE_FILE}`,
      JSON.stringify({
        version: 1,
        policies: {
          'dst.test': { id: 'a1', text: policy('enforce'), fetchedAt: now },
          'bad.test': { id: 'b', text: 'garbage', fetchedAt: now },
          'odd.test': 42,
        },
      }),
    );
    w.txt('a1');
    const s = w.make();
    assert.equal(s.size, 1);
    assert.equal((await s.policyFor('dst.test')).source, 'cache');
    assert.ok(w.lines.some((l) => l.msg === 'MTA-STS policy cache entry ignored: not a policy'));
    assert.ok(w.lines.some((l) => l.msg === 'MTA-STS policy cache entries ignored: not policies'));
  });

  test('an address literal has no policy and asks no DNS question', async () => {
    const w = world();
    assert.equal((await w.make().policyFor('[192.0.2.1]')).mode, 'none');
  });
});
