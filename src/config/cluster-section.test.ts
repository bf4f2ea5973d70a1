// Tests of the [cluster] section: what a valid one resolves to, each class of problem named by
// its key, and that without [cluster] there is no cluster at all.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseRate } from './cluster-section.js';
import { ConfigError, configFromToml } from './load.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'logmta-cluster-config-'));
  writeFileSync(join(dir, 'cluster.key'), 'a-secret-of-enough-bytes\n');
  writeFileSync(join(dir, 'short.key'), 'short\n');
  writeFileSync(join(dir, 'redis.pass'), 'redis-pw\n');
});
after(() => rmSync(dir, { recursive: true, force: true }));

const load = (text: string) => configFromToml(text, { source: 'c.toml', baseDir: dir });

function problems(text: string): string[] {
  try {
    load(text);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return [...e.problems];
  }
  assert.fail('expected the configuration to be refused');
}

describe('[cluster]', () => {
  test('without [cluster] there is no cluster', () => {
    assert.equal(load('').cluster, undefined);
  });

  test('a URL, secrets from files, advertised addresses and defaults', () => {
    const c = load(`
[cluster]
node = "mx1"
redis = "redis://10.0.0.5:6379/2"
password_file = "redis.pass"
secret_file = "cluster.key"
advertise = "10.0.0.1:25"
odmr_advertise = "10.0.0.1:366"
message_rate_per_destination = "6000/min,max_burst=50"
connections_per_destination = 40
`).cluster!;
    assert.deepEqual(c.redis, { kind: 'url', url: 'redis://10.0.0.5:6379/2' });
    assert.equal(c.password, 'redis-pw');
    assert.equal(c.secret, 'a-secret-of-enough-bytes');
    assert.deepEqual(c.advertise, { host: '10.0.0.1', port: 25 });
    assert.deepEqual(c.odmrAdvertise, { host: '10.0.0.1', port: 366 });
    assert.equal(c.prefix, 'logmta:');
    assert.equal(c.heartbeatMs, 2_000);
    assert.equal(c.nodeTtlMs, 10_000);
    assert.equal(c.transferIntervalMs, 30_000);
    assert.equal(c.connectionsPerDestination, 40);
    assert.deepEqual(c.messageRate, { count: 6000, periodMs: 60_000, burst: 50 });
  });

  test('a list of Sentinels needs the master name', () => {
    const c = load(`
[cluster]
node = "mx1"
redis = ["10.0.0.5", "10.0.0.6:26380"]
sentinel_master = "logmta"
db = 1
secret_file = "cluster.key"
`).cluster!;
    assert.deepEqual(c.redis, {
      kind: 'sentinel',
      sentinels: [
        { host: '10.0.0.5', port: 26379 },
        { host: '10.0.0.6', port: 26380 },
      ],
      master: 'logmta',
      db: 1,
    });
    assert.ok(
      problems('[cluster]\nnode = "x"\nredis = ["10.0.0.5"]\nsecret_file = "cluster.key"').some((p) =>
        p.startsWith('c.toml: cluster.sentinel_master: required'),
      ),
    );
  });

  test('the SMTP sessions cannot run in a thread of their own in a cluster (yet)', () => {
    const list = problems(`
[smtp]
session_thread = true
[cluster]
node = "mx1"
redis = "redis://10.0.0.5:6379/2"
secret_file = "cluster.key"
advertise = "10.0.0.1:25"
`);
    assert.deepEqual(list, [
      'c.toml: smtp.session_thread: cannot be used with [cluster] (the cluster runs the SMTP sessions on the main thread)',
    ]);
  });

  test('the session thread is on by default, and off by default in a cluster', () => {
    assert.equal(load('').smtp.sessionThread, true);
    assert.equal(load('[smtp]\nsession_thread = false').smtp.sessionThread, false);
    const c = load(
      '[cluster]\nnode = "mx1"\nredis = "redis://10.0.0.5:6379/2"\nsecret_file = "cluster.key"\nadvertise = "10.0.0.1:25"',
    );
    assert.equal(c.smtp.sessionThread, false);
  });
  test('each problem names its key', () => {
    const list = problems(`
[cluster]
node = "MX 1"
redis = "http://x"
secret_file = "short.key"
heartbeat = "5s"
node_ttl = "6s"
advertise = "0.0.0.0:25"
message_rate_per_destination = "fast"
colour = "blue"
`);
    const has = (re: RegExp) =>
      assert.ok(
        list.some((p) => re.test(p)),
        `${re} not in\n${list.join('\n')}`,
      );
    has(/^c\.toml: cluster\.node: expected a node name/);
    has(/^c\.toml: cluster\.redis: expected a redis:\/\/ or rediss:\/\/ URL/);
    has(/^c\.toml: cluster\.secret_file: the cluster secret must be at least 16 bytes/);
    has(/^c\.toml: cluster\.node_ttl: must be at least twice heartbeat/);
    has(/^c\.toml: cluster\.advertise: expected an address peers can connect to/);
    has(/^c\.toml: cluster\.message_rate_per_destination: expected a rate/);
    has(/^c\.toml: cluster\.colour: unknown key/);
  });

  test('node, redis and the secret are required', () => {
    const list = problems('[cluster]\n');
    for (const k of ['node', 'redis', 'secret'])
      assert.ok(
        list.some((p) => p.startsWith(`c.toml: cluster.${k}: required`)),
        list.join('\n'),
      );
  });

  test('advertise is required when the first SMTP listener is a wildcard', () => {
    const list = problems(`
[smtp]
listen = ["0.0.0.0:25"]
[cluster]
node = "mx1"
redis = "redis://127.0.0.1:6379"
secret_file = "cluster.key"
`);
    assert.ok(
      list.some((p) => p.startsWith('c.toml: cluster.advertise: required when smtp.listen[1] is a wildcard')),
    );
  });

  test('rates: units, separators and bursts', () => {
    assert.deepEqual(parseRate('100/s'), { count: 100, periodMs: 1000, burst: 100 });
    assert.deepEqual(parseRate('1,000/hour'), { count: 1000, periodMs: 3_600_000, burst: 1000 });
    assert.deepEqual(parseRate('10_000/d,max_burst=10'), { count: 10_000, periodMs: 86_400_000, burst: 10 });
    assert.throws(() => parseRate('0/s'));
    assert.throws(() => parseRate('10/fortnight'));
  });
});
