// [cluster] as the operator meets it: `logmta serve` with a bad [cluster] does not start — exit
// 78 naming every bad key — and the cluster commands on a configuration without [cluster] say
// there is none (78). No Redis needed: a configuration is refused before anything connects.
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { makeTempDir, runLogmta } from '../support/daemon.js';

describe('cluster: the [cluster] section', () => {
  const dir = makeTempDir('logmta-cluster-config-');
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('logmta serve refuses a bad [cluster], naming each bad key (exit 78)', async () => {
    writeFileSync(join(dir, 'short.key'), 'too-short\n');
    const file = join(dir, 'bad.toml');
    writeFileSync(
      file,
      `data_dir = "${join(dir, 'data')}"
[smtp]
listen = ["127.0.0.1:0"]
[cluster]
node = "MX 1"
redis = "http://127.0.0.1:6379"
secret_file = "short.key"
odmr_advertise = "0.0.0.0:366"
heartbeat = "5s"
node_ttl = "6s"
connections_per_destination = -1
`,
    );
    const r = await runLogmta(['serve', '--config', file], { cwd: dir });
    assert.equal(r.code, 78, r.stderr);
    for (const re of [
      /bad\.toml: cluster\.node: expected a node name/,
      /bad\.toml: cluster\.redis: expected a redis:\/\/ or rediss:\/\/ URL/,
      /bad\.toml: cluster\.secret_file: the cluster secret must be at least 16 bytes/,
      /bad\.toml: cluster\.odmr_advertise: expected an address peers can connect to/,
      /bad\.toml: cluster\.node_ttl: must be at least twice heartbeat/,
      /bad\.toml: cluster\.connections_per_destination: /,
    ])
      assert.match(r.stderr, re);
    // A secret file that is missing is named too.
    writeFileSync(
      file,
      `data_dir = "${join(dir, 'data')}"\n[cluster]\nnode = "mx1"\nredis = "redis://127.0.0.1:6379"\nsecret_file = "nope.key"\n`,
    );
    const missing = await runLogmta(['serve', '--config', file], { cwd: dir });
    assert.equal(missing.code, 78);
    assert.match(missing.stderr, /cluster\.secret_file: /);
  });

  test('the cluster commands without [cluster] say there is none (exit 78)', async () => {
    const file = join(dir, 'single.toml');
    writeFileSync(file, `data_dir = "${join(dir, 'data')}"\n`);
    for (const args of [['status'], ['home', 'acme.test'], ['drain', '--status']]) {
      const r = await runLogmta(['cluster', ...args, '--config', file], { cwd: dir });
      assert.equal(r.code, 78, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /no \[cluster\] section/);
    }
  });
});
