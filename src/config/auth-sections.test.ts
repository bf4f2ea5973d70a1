// The [dns] and [[dkim]] sections: defaults, values, and problems named by key.
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ConfigError, configFromToml } from './load.js';

function problemsOf(toml: string, baseDir?: string): string[] {
  try {
    configFromToml(toml, { source: 'f', ...(baseDir ? { baseDir } : {}) });
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
      dnssec: 'loopback',
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
      dnssec: 'loopback',
    });
  });

  test('dnssec says whose validation is believed: loopback (default), always, never; others are refused', () => {
    for (const v of ['loopback', 'always', 'never'] as const) {
      assert.equal(configFromToml(`[dns]\ndnssec = "${v}"\n`).dns.dnssec, v);
    }
    const p = problemsOf('[dns]\ndnssec = "yes"\n');
    assert.equal(p.length, 1, p.join('\n'));
    assert.match(p[0] ?? '', /^f: dns\.dnssec: /);
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

describe('[[dkim]]', () => {
  const dir = mkdtempSync(join(tmpdir(), 'logmta-dkim-conf-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const pem = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }).toString();
  writeFileSync(join(dir, 'rsa.pem'), pem(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey));
  writeFileSync(join(dir, 'ed.pem'), pem(generateKeyPairSync('ed25519').privateKey));
  writeFileSync(join(dir, 'short.pem'), pem(generateKeyPairSync('rsa', { modulusLength: 512 }).privateKey));
  writeFileSync(join(dir, 'ec.pem'), pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey));
  writeFileSync(join(dir, 'junk.pem'), 'not a key\n');
  const load = (toml: string) => configFromToml(toml, { baseDir: dir, source: 'f' });
  const key = (domain: string, selector: string, file: string, extra = '') =>
    `[[dkim]]\ndomain = "${domain}"\nselector = "${selector}"\nkey_file = "${file}"\n${extra}`;

  test('RSA and Ed25519 keys are read, with their algorithm and the record to publish', () => {
    const c = load(
      key('Example.ORG', 's1', 'rsa.pem') + key('example.org', 'e1', 'ed.pem', 'subdomains = true\n'),
    );
    assert.deepEqual(
      c.dkim.map((k) => [k.domain, k.selector, k.algorithm, k.subdomains, k.keyFile]),
      [
        ['example.org', 's1', 'rsa-sha256', false, join(dir, 'rsa.pem')],
        ['example.org', 'e1', 'ed25519-sha256', true, join(dir, 'ed.pem')],
      ],
    );
    assert.match(c.dkim[0]?.record ?? '', /^v=DKIM1; k=rsa; p=MIIBIjAN[A-Za-z0-9+/=]+$/);
    assert.match(c.dkim[1]?.record ?? '', /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
    assert.deepEqual(load('').dkim, []);
  });

  test('unreadable, short, non-signing and duplicate keys are refused, naming the key', () => {
    const p = problemsOf(
      [
        key('example.org', 's1', 'missing.pem'),
        key('example.org', 's2', 'junk.pem'),
        key('example.org', 's3', 'short.pem'),
        key('example.org', 's4', 'ec.pem'),
        key('example.org', 's5', 'ed.pem'),
        key('example.org', 's5', 'rsa.pem'),
        key('example.org', '_bad', 'rsa.pem'),
        '[[dkim]]\ndomain = "example.org"\n',
      ].join(''),
      dir,
    );
    const want = [
      /^f: dkim\[1\]\.key_file: cannot read .*missing\.pem" \(ENOENT\)$/,
      /^f: dkim\[2\]\.key_file: .*junk\.pem" holds no private key/,
      /^f: dkim\[3\]\.key_file: an RSA key of 512 bits is too short/,
      /^f: dkim\[4\]\.key_file: a ec key cannot sign DKIM/,
      /^f: dkim\[6\]\.selector: "s5" of example\.org is already used by dkim\[5\]$/,
      /^f: dkim\[7\]\.selector: expected a selector/,
      /^f: dkim\[8\]\.selector: required$/,
      /^f: dkim\[8\]\.key_file: required$/,
    ];
    assert.equal(p.length, want.length, p.join('\n'));
    for (const w of want)
      assert.ok(
        p.some((l) => w.test(l)),
        `${w} in\n${p.join('\n')}`,
      );
  });
});

describe('[auth]', () => {
  test('the checks are off by default, and only annotate when on; authserv_id defaults to the host name', () => {
    assert.deepEqual(configFromToml('hostname = "MX.Example.ORG"\n').auth, {
      checks: false,
      authservId: 'mx.example.org',
      dmarcReject: false,
      tempfailOnDnsError: false,
      timeoutMs: 20_000,
    });
    const c = configFromToml(
      '[auth]\nchecks = true\nauthserv_id = "auth.example.org"\ndmarc_reject = true\ntempfail_on_dns_error = true\ntimeout = "5s"\n',
    );
    assert.deepEqual(c.auth, {
      checks: true,
      authservId: 'auth.example.org',
      dmarcReject: true,
      tempfailOnDnsError: true,
      timeoutMs: 5_000,
    });
  });

  test('bad values name their key', () => {
    const p = problemsOf('[auth]\nchecks = "yes"\nauthserv_id = "not a host"\ndmarc_rejects = true\n');
    assert.equal(p.length, 3, p.join('\n'));
    assert.ok(p.some((l) => l.startsWith('f: auth.checks: expected true or false')));
    assert.ok(p.some((l) => l.startsWith('f: auth.authserv_id: expected a host name')));
    assert.ok(
      p.some((l) => l.startsWith('f: auth.dmarc_rejects: unknown key (did you mean "dmarc_reject"?)')),
    );
  });
});

describe('[[dnsbl]]', () => {
  test('zones are checked at RCPT unless at = "connect"; match narrows the listing answers', () => {
    const c = configFromToml(
      '[[dnsbl]]\nzone = "Zen.Example.ORG."\n[[dnsbl]]\nzone = "bl.example"\nat = "connect"\nmatch = ["127.0.0.2", "127.0.0.4"]\n',
    );
    assert.deepEqual(c.dnsbl, [
      { zone: 'zen.example.org', at: 'rcpt', match: undefined },
      { zone: 'bl.example', at: 'connect', match: ['127.0.0.2', '127.0.0.4'] },
    ]);
    assert.deepEqual(configFromToml('').dnsbl, []);
  });

  test('bad values name their key', () => {
    const p = problemsOf('[[dnsbl]]\nat = "mail"\nmatch = ["10.0.0.1"]\n');
    assert.equal(p.length, 3, p.join('\n'));
    assert.ok(p.some((l) => l === 'f: dnsbl[1].zone: required'));
    assert.ok(p.some((l) => l.startsWith('f: dnsbl[1].at: expected one of "connect", "rcpt"')));
    assert.ok(p.some((l) => l.startsWith('f: dnsbl[1].match[1]: expected an answer address in 127.0.0.0/8')));
  });
});
