// The [dns] section (and, as they come, the authentication sections): defaults, values, and
// problems named by key.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, configFromToml } from './load.js';

function problemsOf(toml: string): string[] {
  try {
    configFromToml(toml, { source: 'f' });
  } catch (e) {
    if (e instanceof ConfigError) return [...e.problems];
    throw e;
  }
  assert.fail('expected a ConfigError');
}

describe('[dns]', () => {
  test('without [dns] the system servers are used, with the documented defaults', () => {
    assert.deepEqual(configFromToml('').dns, {
      servers: [],
      timeoutMs: 2_000,
      attempts: 2,
      cacheSize: 10_000,
      maxTtlMs: 3_600_000,
      maxNegativeTtlMs: 900_000,
    });
  });

  test('servers take an address with an optional port (53 by default)', () => {
    const c = configFromToml(
      '[dns]\nservers = ["127.0.0.1:5353", "::1", "[::1]:5300", "192.0.2.1"]\ntimeout = "500ms"\nattempts = 3\ncache_size = 0\nmax_ttl = "5m"\nmax_negative_ttl = 0\n',
    );
    assert.deepEqual(c.dns, {
      servers: [
        { host: '127.0.0.1', port: 5353 },
        { host: '::1', port: 53 },
        { host: '::1', port: 5300 },
        { host: '192.0.2.1', port: 53 },
      ],
      timeoutMs: 500,
      attempts: 3,
      cacheSize: 0,
      maxTtlMs: 300_000,
      maxNegativeTtlMs: 0,
    });
  });

  test('bad values name their key', () => {
    const p = problemsOf(
      '[dns]\nservers = ["ns.example"]\ntimeout = 0\nattempts = 0\ncache_size = -1\nserver = []\n',
    );
    assert.equal(p.length, 5, p.join('\n'));
    assert.match(p[0] ?? '', /^f: dns\.servers\[1\]: expected an address/);
    assert.ok(p.some((l) => l.startsWith('f: dns.timeout: expected a duration greater than zero')));
    assert.ok(p.some((l) => l.startsWith('f: dns.attempts: expected a positive integer')));
    assert.ok(p.some((l) => l.startsWith('f: dns.cache_size: expected an integer of at least 0')));
    assert.ok(p.some((l) => l.startsWith('f: dns.server: unknown key (did you mean "servers"?)')));
  });
});
