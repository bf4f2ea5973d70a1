// Tests of configuration loading: defaults, a full file, overrides, one test per class of problem, cross-checks.

import assert from 'node:assert/strict';
import { configNotices } from './checks.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeTestCertFiles } from '../../test/support/certs.js';
import { ConfigError, configFromToml, loadConfig } from './load.js';
import { cidrListContains } from './net.js';

let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'logmta-config-'));
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The problems of an invalid configuration (fails the test if it is valid). */
function problemsOf(text: string): string[] {
  try {
    configFromToml(text, { source: 'config.toml', baseDir: dir });
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.code, 'CONFIG_INVALID');
    assert.equal(e.kind, 'permanent');
    assert.equal(e.message, e.problems.join('\n'));
    return [...e.problems];
  }
  assert.fail('expected the configuration to be refused');
}

function assertProblem(text: string, expected: string | RegExp): void {
  const list = problemsOf(text);
  const hit = list.some((p) => (typeof expected === 'string' ? p === expected : expected.test(p)));
  assert.ok(hit, `no problem matching ${String(expected)} in:\n${list.join('\n')}`);
}

describe('defaults', () => {
  test('without a file every default applies', () => {
    const c = loadConfig({});
    const data = resolve('logmta-data');
    assert.equal(c.hostname, hostname());
    assert.equal(c.dataDir, data);
    assert.equal(c.configFile, undefined);
    assert.deepEqual(c.smtp.listen, [{ host: '127.0.0.1', port: 2525 }]);
    assert.deepEqual(c.smtp.submission, []);
    assert.equal(c.smtp.maxMessageSize, 50 * 1024 * 1024);
    assert.equal(c.smtp.maxRecipients, 1000);
    assert.equal(c.smtp.maxConnections, 1000);
    assert.equal(c.smtp.maxConnectionsPerIp, 50);
    assert.deepEqual(c.smtp.relayNetworks, []);
    assert.deepEqual(c.smtp.relayDomains, []);
    assert.equal(c.smtp.idleTimeoutMs, 300_000);
    assert.equal(c.smtp.commandTimeoutMs, 300_000);
    assert.equal(c.smtp.dataLineTimeoutMs, 300_000);
    assert.equal(c.smtp.minDataRate, 500);
    assert.equal(c.smtp.allowPlainAuthWithoutTls, false);
    assert.equal(c.smtp.authMaxFailures, 5);
    assert.equal(c.smtp.authBlockTimeMs, 600_000);
    assert.equal(c.smtp.authFailureDelayMs, 1_000);
    assert.equal(c.smtp.authFailureDelayMaxMs, 16_000);
    assert.equal(c.tls, undefined);
    assert.deepEqual(c.users, []);
    assert.deepEqual(c.queue, {
      paths: [join(data, 'queue')],
      retryMs: [5, 15, 30, 60, 120, 240, 480].map((m) => m * 60_000),
      maxAgeMs: 5 * 86_400_000,
      delayWarningMs: 4 * 3_600_000,
      segmentSize: 64 * 1024 * 1024,
      memoryBudget: 256 * 1024 * 1024,
      reserve: 4 * 1024 * 1024,
      spareSegments: 4,
    });
    assert.deepEqual(c.local, [
      { domain: 'localhost', maildir: join(data, 'mail', '{user}'), users: undefined, lmtp: undefined },
    ]);
    assert.deepEqual(c.routes, []);
    assert.deepEqual(c.delivery, {
      concurrencyPerDestination: 20,
      concurrencyPerHost: 50,
      maxConnections: 200,
      connectTimeoutMs: 30_000,
      greetingTimeoutMs: 30_000,
      connectionReuseTimeMs: 300_000,
      mxAddressLimit: 5,
      mtaSts: true,
      dane: true,
      tlsCa: undefined,
    });
    assert.equal(c.dns.dnssec, 'loopback');
    assert.deepEqual(c.etrn, []);
    assert.deepEqual(c.etrnLimits, {
      maxConcurrentFlushes: 4,
      requestsPerClient: 10,
      requestWindowMs: 60_000,
    });
    assert.deepEqual(c.odmr, {
      listen: [{ host: '127.0.0.1', port: 3366 }],
      accounts: [],
      providers: [],
      authPerMinute: 30,
    });
    assert.deepEqual(c.admin, {
      socket: join(data, 'admin.sock'),
      listen: undefined,
      token: undefined,
      allowRemote: false,
    });
    assert.deepEqual(c.log, { format: 'json', level: 'info' });
  });

  test('an empty file gives the same configuration as no file', () => {
    const file = join(dir, 'empty.toml');
    writeFileSync(file, '# nothing\n');
    const c = loadConfig({ file, overrides: { dataDir: dir } });
    const d = loadConfig({ overrides: { dataDir: dir } });
    assert.equal(c.configFile, file);
    assert.deepEqual({ ...c, configFile: undefined }, d);
  });

  test('`local = []` means no local domains, while a missing key means localhost', () => {
    assert.deepEqual(configFromToml('local = []').local, []);
    assert.equal(configFromToml('').local[0]?.domain, 'localhost');
  });
});

describe('a full file', () => {
  test('parses to the expected values, with secrets read from files', async () => {
    const { certFile, keyFile } = await writeTestCertFiles(dir);
    writeFileSync(join(dir, 'bob.pass'), 'bob-secret\n');
    writeFileSync(join(dir, 'admin.token'), 'tok123\r\n');
    writeFileSync(join(dir, 'relay.pass'), 'relay-secret');
    const file = join(dir, 'full.toml');
    writeFileSync(
      file,
      `
hostname = "mx.example.test"
data_dir = "data"
[smtp]
listen = ["0.0.0.0:25", "[::1]:2525"]
submission = ["0.0.0.0:587"]
max_message_size = "10MB"
max_recipients = 500
max_connections = 100
max_connections_per_ip = 5
relay_networks = ["127.0.0.0/8", "::1/128", "192.0.2.0/24"]
idle_timeout = "2m"
allow_plain_auth_without_tls = true
auth_max_failures = 3
auth_block_time = "1h"
auth_failure_delay = "500ms"
auth_failure_delay_max = 4
[tls]
cert = "cert.pem"
key = "${keyFile}"
[[user]]
name = "alice"
password = "secret"
[[user]]
name = "bob"
password_file = "bob.pass"
[queue]
paths = ["q0", "/srv/q1"]
retry = ["1m", 600, "1h"]
max_age = "3d"
delay_warning = "0"
segment_size = "16MiB"
spare_segments = 2
[[local]]
domain = "Example.TEST."
maildir = "/var/mail/{domain}/{user}"
users = ["alice", "bob"]
[[local]]
domain = "localhost"
[[route]]
domain = "relay.example"
host = ["a.relay.example:2526", "b.relay.example"]
require_tls = true
verify_tls = true
auth_user = "relayuser"
auth_password_file = "relay.pass"
[[route]]
domain = "*"
host = "smarthost.example:587"
[delivery]
concurrency_per_destination = 4
concurrency_per_host = 8
max_connections = 50
connect_timeout = "10s"
greeting_timeout = "1m"
connection_reuse_time = "90s"
mx_address_limit = 8
mta_sts = false
dane = false
tls_ca_file = "${certFile}"
[[etrn]]
domain = "branch.example"
host = "192.0.2.10:25"
probe_interval = "5m"
subdomains = true
max_age = "7d"
[[etrn]]
domain = "other.example"
[etrn_limits]
max_concurrent_flushes = 2
requests_per_client = 1
request_window = "5m"
[odmr]
listen = ["0.0.0.0:366"]
auth_per_minute = 6
[[odmr.account]]
user = "acme"
password = "acme-pw"
domains = ["acme.example", "acme2.example"]
max_age = "10d"
[[odmr.provider]]
host = "provider.example"
user = "me"
password = "pw"
interval = "1m"
[admin]
socket = "ctl.sock"
listen = "127.0.0.1:8025"
token_file = "admin.token"
[log]
format = "pretty"
level = "debug"
`,
    );
    const c = loadConfig({ file });
    const data = join(dir, 'data');
    assert.equal(c.hostname, 'mx.example.test');
    assert.equal(c.dataDir, data, 'data_dir is relative to the config file');
    assert.equal(c.configFile, file);
    assert.deepEqual(c.smtp.listen, [
      { host: '0.0.0.0', port: 25 },
      { host: '::1', port: 2525 },
    ]);
    assert.deepEqual(c.smtp.submission, [{ host: '0.0.0.0', port: 587 }]);
    assert.equal(c.smtp.maxMessageSize, 10_000_000);
    assert.equal(c.smtp.maxRecipients, 500);
    assert.equal(c.smtp.maxConnections, 100);
    assert.equal(c.smtp.maxConnectionsPerIp, 5);
    assert.deepEqual(
      c.smtp.relayNetworks.map((n) => n.text),
      ['127.0.0.0/8', '::1/128', '192.0.2.0/24'],
    );
    assert.equal(cidrListContains(c.smtp.relayNetworks, '::ffff:127.0.0.1'), true);
    assert.equal(cidrListContains(c.smtp.relayNetworks, '198.51.100.1'), false);
    assert.equal(c.smtp.idleTimeoutMs, 120_000);
    assert.equal(c.smtp.allowPlainAuthWithoutTls, true);
    assert.equal(c.smtp.authMaxFailures, 3);
    assert.equal(c.smtp.authBlockTimeMs, 3_600_000);
    assert.equal(c.smtp.authFailureDelayMs, 500);
    assert.equal(c.smtp.authFailureDelayMaxMs, 4_000, 'a plain integer is seconds');
    assert.equal(c.tls?.certFile, certFile);
    assert.equal(c.tls?.keyFile, keyFile);
    assert.match(c.tls?.cert ?? '', /BEGIN CERTIFICATE/);
    assert.match(c.tls?.key ?? '', /BEGIN PRIVATE KEY/);
    assert.deepEqual(c.users, [
      { name: 'alice', password: 'secret' },
      { name: 'bob', password: 'bob-secret' },
    ]);
    assert.deepEqual(c.queue, {
      paths: [join(data, 'q0'), '/srv/q1'],
      retryMs: [60_000, 600_000, 3_600_000],
      maxAgeMs: 3 * 86_400_000,
      delayWarningMs: 0,
      segmentSize: 16 * 1024 * 1024,
      memoryBudget: 256 * 1024 * 1024,
      reserve: 4 * 1024 * 1024,
      spareSegments: 2,
    });
    assert.deepEqual(c.local, [
      {
        domain: 'example.test',
        maildir: '/var/mail/{domain}/{user}',
        users: ['alice', 'bob'],
        lmtp: undefined,
      },
      { domain: 'localhost', maildir: join(data, 'mail', '{user}'), users: undefined, lmtp: undefined },
    ]);
    assert.deepEqual(c.routes, [
      {
        domain: 'relay.example',
        hosts: [
          { host: 'a.relay.example', port: 2526 },
          { host: 'b.relay.example', port: 25 },
        ],
        requireTls: true,
        verifyTls: true,
        auth: { user: 'relayuser', password: 'relay-secret' },
      },
      {
        domain: '*',
        hosts: [{ host: 'smarthost.example', port: 587 }],
        requireTls: false,
        verifyTls: false,
        auth: undefined,
      },
    ]);
    assert.deepEqual(c.delivery, {
      concurrencyPerDestination: 4,
      concurrencyPerHost: 8,
      maxConnections: 50,
      connectTimeoutMs: 10_000,
      greetingTimeoutMs: 60_000,
      connectionReuseTimeMs: 90_000,
      mxAddressLimit: 8,
      mtaSts: false,
      dane: false,
      tlsCa: { file: certFile, text: readFileSync(certFile, 'utf8') },
    });
    assert.deepEqual(c.etrn, [
      {
        domain: 'branch.example',
        host: { host: '192.0.2.10', port: 25 },
        probeIntervalMs: 300_000,
        subdomains: true,
        maxAgeMs: 7 * 86_400_000,
      },
      {
        domain: 'other.example',
        host: undefined,
        probeIntervalMs: 900_000,
        subdomains: false,
        maxAgeMs: undefined,
      },
    ]);
    assert.deepEqual(c.odmr, {
      listen: [{ host: '0.0.0.0', port: 366 }],
      accounts: [
        {
          user: 'acme',
          password: 'acme-pw',
          domains: ['acme.example', 'acme2.example'],
          maxAgeMs: 10 * 86_400_000,
        },
      ],
      providers: [
        {
          host: { host: 'provider.example', port: 366 },
          user: 'me',
          password: 'pw',
          domains: undefined,
          intervalMs: 60_000,
        },
      ],
      authPerMinute: 6,
    });
    assert.deepEqual(c.etrnLimits, {
      maxConcurrentFlushes: 2,
      requestsPerClient: 1,
      requestWindowMs: 300_000,
    });
    assert.deepEqual(c.admin, {
      socket: join(data, 'ctl.sock'),
      listen: { host: '127.0.0.1', port: 8025 },
      token: 'tok123',
      allowRemote: false,
    });
    assert.deepEqual(c.log, { format: 'pretty', level: 'debug' });
  });
});

describe('overrides', () => {
  test('--listen replaces smtp.listen and --data-dir moves every derived path', () => {
    const c = configFromToml('[smtp]\nlisten = ["0.0.0.0:25"]\n', {
      overrides: { listen: ['127.0.0.1:0', '[::1]:2526'], dataDir: join(dir, 'elsewhere') },
    });
    assert.deepEqual(c.smtp.listen, [
      { host: '127.0.0.1', port: 0 },
      { host: '::1', port: 2526 },
    ]);
    assert.equal(c.dataDir, join(dir, 'elsewhere'));
    assert.deepEqual(c.queue.paths, [join(dir, 'elsewhere', 'queue')]);
    assert.equal(c.admin.socket, join(dir, 'elsewhere', 'admin.sock'));
    assert.equal(c.local[0]?.maildir, join(dir, 'elsewhere', 'mail', '{user}'));
  });
  test('a bad --listen is reported as a command-line problem', () => {
    assert.throws(
      () => loadConfig({ overrides: { listen: ['nowhere'] } }),
      (e: ConfigError) => e.problems.some((p) => p.startsWith('command line: --listen: expected an address')),
    );
  });
});

describe('problems', () => {
  test('the message names the file, the key path and the value', () => {
    assertProblem(
      '[smtp]\nmax_recipients = "abc"\n',
      'config.toml: smtp.max_recipients: expected a positive integer, got "abc"',
    );
  });
  test('delivery.mx_address_limit must be a positive integer; 0 is no "no limit", as in Postfix', () => {
    assertProblem(
      '[delivery]\nmx_address_limit = 0\n',
      'config.toml: delivery.mx_address_limit: expected a positive integer, got 0 (there is no "no limit" value: write the most MX addresses one attempt may try)',
    );
    assertProblem(
      '[delivery]\nmx_address_limit = 2.5\n',
      'config.toml: delivery.mx_address_limit: expected a positive integer, got 2.5',
    );
    assertProblem(
      '[delivery]\nmx_address_limit = "5"\n',
      'config.toml: delivery.mx_address_limit: expected a positive integer, got "5"',
    );
  });
  test('delivery.tls_ca_file must be a readable PEM file', () => {
    assertProblem(
      '[delivery]\ntls_ca_file = "/nonexistent/ca.pem"\n',
      /delivery\.tls_ca_file: .*nonexistent/,
    );
    writeFileSync(join(dir, 'not-pem.txt'), 'hello');
    assertProblem(`[delivery]\ntls_ca_file = "${join(dir, 'not-pem.txt')}"\n`, /holds no PEM block/);
    assertProblem('[delivery]\nmta_sts = "yes"\n', /delivery\.mta_sts: expected true or false/);
    assertProblem('[delivery]\ndane = "may"\n', /delivery\.dane: expected true or false/);
    assertProblem('[dns]\ndnssec = "yes"\n', /dns\.dnssec: expected one of "loopback", "always", "never"/);
  });
  test('every problem is collected, not only the first', () => {
    const list = problemsOf('[smtp]\nmax_recipients = 0\nidle_timeout = "soon"\n[log]\nlevel = "loud"\n');
    assert.equal(list.length, 3, list.join('\n'));
    assert.match(list[0]!, /smtp\.max_recipients: expected a positive integer, got 0/);
    assert.match(list[1]!, /smtp\.idle_timeout: expected a duration like .*, got "soon"/);
    assert.match(list[2]!, /log\.level: expected one of "fatal", .*, got "loud"/);
  });
  test('unknown keys are refused at every level, with a suggestion when close', () => {
    assertProblem('hostnme = "x"\n', 'config.toml: hostnme: unknown key (did you mean "hostname"?)');
    assertProblem('[smtp]\nlisen = []\n', 'config.toml: smtp.lisen: unknown key (did you mean "listen"?)');
    assertProblem(
      '[[route]]\ndomain = "a.example"\nhost = "x:25"\nport = 1\n',
      'config.toml: route[1].port: unknown key',
    );
    assertProblem('[odmr.account.extra]\n', /odmr\.account: expected an array of tables/);
    assertProblem('[nonsense]\n', 'config.toml: nonsense: unknown key');
  });
  test('wrong types name what was expected', () => {
    assertProblem('hostname = 5\n', 'config.toml: hostname: expected a non-empty string, got 5');
    assertProblem('smtp = 1\n', /smtp: expected a table \(\[smtp\]\), got 1/);
    assertProblem(
      '[smtp]\nlisten = "127.0.0.1:25"\n',
      /smtp\.listen: expected an array of strings, got "127\.0\.0\.1:25"/,
    );
    assertProblem(
      '[smtp]\nallow_plain_auth_without_tls = "yes"\n',
      /allow_plain_auth_without_tls: expected true or false/,
    );
    assertProblem('[smtp]\nmax_message_size = 1.5\n', /smtp\.max_message_size: expected a size/);
    assertProblem('[smtp]\nmax_message_size = "50 parsecs"\n', /smtp\.max_message_size: expected a size/);
    assertProblem(
      '[queue]\nmax_age = 0\n',
      'config.toml: queue.max_age: expected a duration greater than zero, got 0',
    );
    assertProblem(
      '[queue]\nretry = ["5m", "0s"]\n',
      /queue\.retry\[2\]: expected a duration greater than zero/,
    );
    assertProblem('[queue]\nretry = []\n', /queue\.retry: expected a non-empty array/);
    assertProblem(
      '[queue]\nsegment_size = 64\n',
      /queue\.segment_size: expected a size of at least 4096 bytes/,
    );
    assertProblem(
      '[queue]\nspare_segments = -1\n',
      /queue\.spare_segments: expected an integer of at least 0/,
    );
    assertProblem(
      '[queue]\nspare_segments = "4"\n',
      /queue\.spare_segments: expected an integer of at least 0/,
    );
  });
  test('sizes and durations the queue cannot hold are refused with the bound', () => {
    assertProblem(
      '[queue]\nsegment_size = "8GiB"\n',
      'config.toml: queue.segment_size: expected a size of at most 1GiB (record offsets in a segment are 32-bit), got "8GiB"',
    );
    assertProblem(
      '[smtp]\nmax_message_size = "1GiB"\n',
      /smtp\.max_message_size: expected a size of at most 256MiB \(the largest message the queue stores\)/,
    );
    assertProblem(
      '[[etrn]]\ndomain = "example.test"\nprobe_interval = "400d"\n',
      'config.toml: etrn[1].probe_interval: expected a duration of at most 365d, got "400d"',
    );
    assertProblem(
      '[queue]\nretry = ["5m", "1000w"]\n',
      /queue\.retry\[2\]: expected a duration of at most 365d/,
    );
    // The bounds themselves are accepted.
    const c = configFromToml(
      '[queue]\nsegment_size = "1GiB"\nmax_age = "365d"\n[smtp]\nmax_message_size = "256MiB"\n[[etrn]]\ndomain = "example.test"\nprobe_interval = "30d"\n',
      { source: 'config.toml', baseDir: dir },
    );
    assert.equal(c.queue.segmentSize, 1024 ** 3);
    assert.equal(c.smtp.maxMessageSize, 256 * 1024 ** 2);
    assert.equal(c.etrn[0]!.probeIntervalMs, 30 * 86_400_000);
  });
  test('addresses and networks are validated per element', () => {
    assertProblem(
      '[smtp]\nlisten = ["127.0.0.1:25", "127.0.0.1:99999"]\n',
      /smtp\.listen\[2\]: expected an address/,
    );
    assertProblem(
      '[smtp]\nsubmission = ["mail.example:587"]\n',
      /smtp\.submission\[1\]: expected an address/,
    );
    assertProblem(
      '[smtp]\nrelay_networks = ["10.0.0.0/8", "10.0.0.0/33"]\n',
      /smtp\.relay_networks\[2\]: expected a CIDR/,
    );
    assertProblem(
      '[[route]]\ndomain = "x.example"\nhost = []\n',
      /route\[1\]\.host: expected at least one entry/,
    );
  });
  test('required keys are named', () => {
    assertProblem('[[route]]\nhost = "a:25"\n', 'config.toml: route[1].domain: required');
    assertProblem('[[route]]\ndomain = "x.example"\n', 'config.toml: route[1].host: required');
    assertProblem('[[user]]\nname = "a"\n', 'config.toml: user[1].password: required (or password_file)');
    assertProblem('[[odmr.account]]\nuser = "a"\npassword = "p"\n', /odmr\.account\[1\]\.domains: required/);
    assertProblem('[[local]]\nmaildir = "/m/{user}"\n', 'config.toml: local[1].domain: required');
    assertProblem('[tls]\ncert = "c.pem"\n', /tls\.key: required when \[tls\] is present/);
  });
  test('secrets: exactly one of the value and the file, and the file must be readable', () => {
    assertProblem(
      '[[user]]\nname = "a"\npassword = "p"\npassword_file = "f"\n',
      'config.toml: user[1].password: give either password or password_file, not both',
    );
    assertProblem(
      '[[user]]\nname = "a"\npassword_file = "missing.pass"\n',
      /user\[1\]\.password_file: cannot read ".*missing\.pass" \(ENOENT\)/,
    );
    writeFileSync(join(dir, 'empty.pass'), '\n');
    assertProblem(
      '[[user]]\nname = "a"\npassword_file = "empty.pass"\n',
      /user\[1\]\.password_file: "empty\.pass" is empty/,
    );
    assertProblem(
      '[[route]]\ndomain = "x.example"\nhost = "a:25"\nauth_password = "p"\n',
      /route\[1\]\.auth_user: required when a password is given/,
    );
    assertProblem(
      '[[route]]\ndomain = "x.example"\nhost = "a:25"\nauth_user = "u"\n',
      /route\[1\]\.auth_password: required/,
    );
  });
  test('TLS files must exist, hold PEM, and the key must fit the certificate', async () => {
    assertProblem(
      '[tls]\ncert = "nope.pem"\nkey = "nope.key"\n',
      /tls\.cert: cannot read ".*nope\.pem" \(ENOENT\)/,
    );
    writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
    assertProblem(
      '[tls]\ncert = "junk.pem"\nkey = "junk.pem"\n',
      /tls\.cert: ".*junk\.pem" holds no PEM block/,
    );
    const { certFile } = await writeTestCertFiles(dir);
    const { generateKeyPairSync } = await import('node:crypto');
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    writeFileSync(join(dir, 'other.key'), other);
    assertProblem(
      `[tls]\ncert = "${certFile}"\nkey = "other.key"\n`,
      /tls\.key: does not fit the certificate/,
    );
  });
  test('[tls] min_version is TLSv1.2 or TLSv1.3; ciphers must be a list OpenSSL matches', async () => {
    const { certFile, keyFile } = await writeTestCertFiles(dir);
    const base = `[tls]\ncert = "${certFile}"\nkey = "${keyFile}"\n`;
    const c = configFromToml(base);
    assert.equal(c.tls?.minVersion, 'TLSv1.2');
    assert.equal(c.tls?.ciphers, undefined);
    const d = configFromToml(`${base}min_version = "TLSv1.3"\nciphers = "ECDHE-ECDSA-AES256-GCM-SHA384"\n`);
    assert.equal(d.tls?.minVersion, 'TLSv1.3');
    assert.equal(d.tls?.ciphers, 'ECDHE-ECDSA-AES256-GCM-SHA384');
    assertProblem(
      `${base}min_version = "TLSv1.1"\n`,
      /tls\.min_version: expected one of "TLSv1\.2", "TLSv1\.3", got "TLSv1\.1"/,
    );
    assertProblem(
      `${base}ciphers = "NO-SUCH-CIPHER"\n`,
      /tls\.ciphers: OpenSSL matches no cipher in "NO-SUCH-CIPHER"/,
    );
    assertProblem(`${base}ciphers = 42\n`, /tls\.ciphers: expected a non-empty string/);
    assertProblem(
      `${base}ciphers = "TLS_AES_256_GCM_SHA384"\n`,
      /tls\.ciphers: lists only TLS 1\.3 suites: add TLS 1\.2 ones or set min_version = "TLSv1\.3"/,
    );
    configFromToml(`${base}min_version = "TLSv1.3"\nciphers = "TLS_AES_256_GCM_SHA384"\n`);
  });
  test('maildir must contain {user}; local users must be safe path parts', () => {
    assertProblem(
      '[[local]]\ndomain = "a.example"\nmaildir = "/var/mail"\n',
      /local\[1\]\.maildir: must contain "\{user\}"/,
    );
    assertProblem(
      '[[local]]\ndomain = "a.example"\nusers = ["ok", "../etc"]\n',
      /local\[1\]\.users\[2\]: expected a local part that names a mailbox/,
    );
  });
  test('domains are validated', () => {
    assertProblem('[[etrn]]\ndomain = "bad domain"\n', /etrn\[1\]\.domain: expected a domain name/);
    assertProblem(
      '[[route]]\ndomain = "-x.example"\nhost = "a:25"\n',
      /route\[1\]\.domain: expected a domain name/,
    );
  });
  test('the HTTP admin listens on loopback unless remote access is allowed, and then needs a token', () => {
    assertProblem(
      '[admin]\nlisten = "0.0.0.0:8025"\n',
      /admin\.listen: "0\.0\.0\.0:8025" is not a loopback address/,
    );
    assertProblem(
      '[admin]\nlisten = "0.0.0.0:8025"\nallow_remote = true\n',
      /admin\.token: required \(or token_file\)/,
    );
    const c = configFromToml('[admin]\nlisten = "0.0.0.0:8025"\nallow_remote = true\ntoken = "t"\n');
    assert.equal(c.admin.allowRemote, true);
  });
  test('a TOML syntax error reports line and column', () => {
    assertProblem('[smtp]\nlisten = [\n', /^config\.toml: line \d+, column \d+: /);
  });
  test('an unreadable file is a CONFIG_INVALID error naming it', () => {
    assert.throws(
      () => loadConfig({ file: join(dir, 'absent.toml') }),
      (e: ConfigError) =>
        e.code === 'CONFIG_INVALID' &&
        /absent\.toml: cannot read the configuration file \(ENOENT\)/.test(e.message),
    );
  });
});

describe('abuse throttles', () => {
  test('each throttle key may be set alone; the others keep their defaults', () => {
    const c = configFromToml('[smtp]\nauth_max_failures = 2\n[etrn_limits]\nrequest_window = "30s"\n');
    assert.equal(c.smtp.authMaxFailures, 2);
    assert.equal(c.smtp.authBlockTimeMs, 600_000);
    assert.deepEqual(c.etrnLimits, {
      maxConcurrentFlushes: 4,
      requestsPerClient: 10,
      requestWindowMs: 30_000,
    });
    assert.equal(c.odmr.authPerMinute, 30);
  });

  test('the failure delay may be turned off with 0', () => {
    const c = configFromToml('[smtp]\nauth_failure_delay = 0\nauth_failure_delay_max = "0s"\n');
    assert.equal(c.smtp.authFailureDelayMs, 0);
    assert.equal(c.smtp.authFailureDelayMaxMs, 0);
  });

  test('a bad value names its key', () => {
    assertProblem(
      '[smtp]\nauth_max_failures = 0\n',
      'config.toml: smtp.auth_max_failures: expected a positive integer, got 0',
    );
    assertProblem(
      '[smtp]\nauth_block_time = "0s"\n',
      /^config\.toml: smtp\.auth_block_time: expected a duration greater than zero/,
    );
    assertProblem('[smtp]\nauth_failure_delay = "soon"\n', /^config\.toml: smtp\.auth_failure_delay: /);
    assertProblem(
      '[smtp]\nauth_failure_delay = "10s"\nauth_failure_delay_max = "5s"\n',
      /^config\.toml: smtp\.auth_failure_delay_max: must be at least auth_failure_delay \(10s\)/,
    );
    assertProblem(
      '[etrn_limits]\nmax_concurrent_flushes = -1\n',
      /^config\.toml: etrn_limits\.max_concurrent_flushes: expected a positive integer/,
    );
    assertProblem(
      '[etrn_limits]\nrequests_per_client = "ten"\n',
      /^config\.toml: etrn_limits\.requests_per_client: expected a positive integer, got "ten"/,
    );
    assertProblem(
      '[etrn_limits]\nrequest_window = 0\n',
      /^config\.toml: etrn_limits\.request_window: expected a duration greater than zero/,
    );
    assertProblem(
      '[odmr]\nauth_per_minute = 1.5\n',
      /^config\.toml: odmr\.auth_per_minute: expected a positive integer/,
    );
  });

  test('unknown keys in [etrn_limits] are refused', () => {
    assertProblem(
      '[etrn_limits]\nrequests_per_clients = 3\n',
      /^config\.toml: etrn_limits\.requests_per_clients: unknown key/,
    );
  });
});

describe('cross-checks', () => {
  test('a domain cannot be both local and ETRN, or local and ODMR', () => {
    assertProblem(
      '[[local]]\ndomain = "a.example"\n[[etrn]]\ndomain = "a.example"\n',
      /etrn\[1\]: ETRN domain "a\.example" is also local domain/,
    );
    assertProblem(
      '[[local]]\ndomain = "a.example"\n[[odmr.account]]\nuser = "u"\npassword = "p"\ndomains = ["a.example"]\n',
      /odmr\.account\[1\]\.domains\[1\]: ODMR domain "a\.example" is also local domain/,
    );
  });
  test('ETRN and ODMR domains are disjoint, including ETRN subdomains', () => {
    const odmr = '[[odmr.account]]\nuser = "u"\npassword = "p"\ndomains = ["x.branch.example"]\n';
    assertProblem(
      `[[etrn]]\ndomain = "x.branch.example"\n${odmr}`,
      /ODMR domain "x\.branch\.example" is also ETRN domain/,
    );
    assertProblem(
      `[[etrn]]\ndomain = "branch.example"\nsubdomains = true\n${odmr}`,
      /overlaps ETRN domain "branch\.example"/,
    );
    // Without subdomains = true the two do not meet.
    configFromToml(`[[etrn]]\ndomain = "branch.example"\n${odmr}`);
  });
  test('ODMR account domains are unique across accounts', () => {
    assertProblem(
      '[[odmr.account]]\nuser = "a"\npassword = "p"\ndomains = ["d.example"]\n[[odmr.account]]\nuser = "b"\npassword = "p"\ndomains = ["D.example"]\n',
      'config.toml: odmr.account[2].domains[1]: ODMR domain "d.example" is already used by odmr.account[1].domains[1]',
    );
  });
  test('duplicate names and domains are refused', () => {
    assertProblem(
      '[[user]]\nname = "a"\npassword = "p"\n[[user]]\nname = "a"\npassword = "q"\n',
      /user\[2\]\.name: user name "a" is already used/,
    );
    assertProblem(
      '[[etrn]]\ndomain = "e.example"\n[[etrn]]\ndomain = "e.example"\n',
      /etrn\[2\]\.domain: ETRN domain "e\.example" is already used/,
    );
    assertProblem(
      '[[route]]\ndomain = "*"\nhost = "a:25"\n[[route]]\ndomain = "*"\nhost = "b:25"\n',
      /route\[2\]\.domain: route domain "\*" is already used/,
    );
    assertProblem(
      '[[route]]\ndomain = "localhost"\nhost = "a:25"\n',
      /route\[1\]\.domain: "localhost" is a local domain/,
    );
  });
  test('ETRN subdomains of a public suffix are refused (a relay for everyone under it); a customer domain below one is fine', () => {
    for (const d of ['com', 'co.uk', 'k12.ak.us', 'xn--p1ai'])
      assertProblem(
        `[[etrn]]\ndomain = "${d}"\nsubdomains = true\n`,
        new RegExp(`etrn\\[1\\]\\.subdomains: "${d.replace(/\./g, '\\.')}" is a public suffix`),
      );
    const c = configFromToml(
      '[[etrn]]\ndomain = "customer.co.uk"\nsubdomains = true\n[[etrn]]\ndomain = "branch.test"\nsubdomains = true\n[[etrn]]\ndomain = "co.uk"\n',
    );
    assert.deepEqual(
      c.etrn.map((e) => e.domain),
      ['customer.co.uk', 'branch.test', 'co.uk'],
      'without subdomains, a suffix is just its own name; private-section suffixes and unknown TLDs pass',
    );
  });

  test('a route or ETRN host that is one of our own listeners is a loop: refused', () => {
    const listen = '[smtp]\nlisten = ["127.0.0.1:2525", "[::]:2600"]\nsubmission = ["127.0.0.1:2587"]\n';
    assertProblem(
      `${listen}[[route]]\ndomain = "c.test"\nhost = "127.0.0.1:2525"\n`,
      "config.toml: route[1].host: 127.0.0.1:2525 is one of this MTA's own listeners: mail sent there comes back here (a loop); name the next hop",
    );
    assertProblem(
      `${listen}[[route]]\ndomain = "c.test"\nhost = ["192.0.2.1:25", "localhost:2587"]\n`,
      /route\[1\]\.host\[2\]: localhost:2587 is one of this MTA's own listeners/,
    );
    // A wildcard listener takes every loopback address on its port.
    assertProblem(
      `${listen}[[etrn]]\ndomain = "e.test"\nhost = "127.0.0.9:2600"\n`,
      /etrn\[1\]\.host: 127\.0\.0\.9:2600 is one of this MTA's own listeners/,
    );
    // Another port of the same address, and names (DNS decides at delivery), are not.
    configFromToml(
      `${listen}[[route]]\ndomain = "c.test"\nhost = ["127.0.0.1:2526", "relay.example:2525"]\n`,
    );
  });

  test('notices: a host name that is not fully qualified, a public listener without TLS', () => {
    assert.deepEqual(
      configNotices(configFromToml('hostname = "mx.example.net"\n[smtp]\nlisten = ["127.0.0.1:25"]\n')),
      [],
    );
    const n = configNotices(
      configFromToml('hostname = "box"\n[smtp]\nlisten = ["0.0.0.0:25", "127.0.0.1:26"]\n'),
    );
    assert.equal(n.length, 2);
    assert.match(n[0]!, /hostname "box" is not a fully qualified domain name/);
    assert.match(n[1]!, /no \[tls\]: 0\.0\.0\.0:25 offer no STARTTLS/);
  });

  test('notices: a TLS certificate that does not name the host name, or is outside its validity', async () => {
    const { certFile, keyFile } = await writeTestCertFiles(dir);
    const certNotices = (c: ReturnType<typeof configFromToml>, now?: number): string[] =>
      configNotices(c, now).filter((n) => n.includes('TLS certificate'));
    const tls = `[smtp]\nlisten = ["127.0.0.1:25"]\n[tls]\ncert = "${certFile}"\nkey = "${keyFile}"\n`;
    // The test certificate names localhost (and 127.0.0.1, ::1), valid from an hour ago for a year.
    assert.deepEqual(certNotices(configFromToml(`hostname = "localhost"\n${tls}`)), []);
    const [wrong, ...rest] = certNotices(configFromToml(`hostname = "mx.example.net"\n${tls}`));
    assert.deepEqual(rest, []);
    assert.match(
      wrong ?? '',
      /the TLS certificate .*cert\.pem does not name hostname "mx\.example\.net" \(it names DNS:localhost/,
    );
    const later = Date.now() + 2 * 365 * 86_400_000;
    assert.match(
      certNotices(configFromToml(`hostname = "localhost"\n${tls}`), later)[0] ?? '',
      /expired on /,
    );
    const earlier = Date.now() - 2 * 86_400_000;
    assert.match(
      certNotices(configFromToml(`hostname = "localhost"\n${tls}`), earlier)[0] ?? '',
      /is not valid before /,
    );
  });

  test('relay_networks opens no relay to the Internet: nothing wider than a /8 (IPv6 /16)', () => {
    const c = configFromToml('[smtp]\nrelay_networks = ["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]\n');
    assert.deepEqual(
      c.smtp.relayNetworks.map((n) => n.text),
      ['10.0.0.0/8', '192.168.1.0/24', '2001:db8::/32'],
    );
    assertProblem(
      '[smtp]\nrelay_networks = ["0.0.0.0/0"]\n',
      /relay_networks\[1\]: 0\.0\.0\.0\/0 would let every address relay/,
    );
    assertProblem(
      '[smtp]\nrelay_networks = ["::/0"]\n',
      /relay_networks\[1\]: ::\/0 would let every address relay/,
    );
    assertProblem(
      '[smtp]\nrelay_networks = ["10.0.0.0/8", "64.0.0.0/2"]\n',
      /relay_networks\[2\]: .*an open relay/,
    );
    assertProblem('[smtp]\nrelay_networks = ["2000::/3"]\n', /relay_networks\[1\]: .*at most a \/16/);
  });

  test('relay_networks: an IPv6 block is as wide as the IPv4 addresses it holds through ::ffff:0:0/96', () => {
    // IPv4 clients match IPv4-mapped blocks (config/net.ts), so these are 0.0.0.0/0 in disguise.
    for (const block of ['::ffff:0:0/96', '::/16', '::/80', '::ffff:0.0.0.0/97'])
      assertProblem(
        `[smtp]\nrelay_networks = ["${block}"]\n`,
        /relay_networks\[1\]: .* would let (every IPv4 address|a \/1 of IPv4) \(IPv4 clients match/,
      );
    assertProblem('[smtp]\nrelay_networks = ["::ffff:64.0.0.0/98"]\n', /a \/2 of IPv4/);
    const c = configFromToml('[smtp]\nrelay_networks = ["::ffff:10.0.0.0/104", "::/96", "fd00::/16"]\n');
    assert.equal(c.smtp.relayNetworks.length, 3);
  });

  test('relay_domains are domains, unique, and neither local, ETRN nor ODMR domains', () => {
    const c = configFromToml('[smtp]\nrelay_domains = ["Backup.Example.", "other.example"]\n');
    assert.deepEqual(c.smtp.relayDomains, ['backup.example', 'other.example']);
    assert.deepEqual(configFromToml('').smtp.relayDomains, []);
    assertProblem(
      '[smtp]\nrelay_domains = ["ok.example", "not a domain"]\n',
      /smtp\.relay_domains\[2\]: expected a domain name/,
    );
    assertProblem('[smtp]\nrelay_domains = ["*"]\n', /smtp\.relay_domains\[1\]: expected a domain name/);
    assertProblem(
      '[smtp]\nrelay_domains = ["localhost"]\n',
      /smtp\.relay_domains\[1\]: "localhost" is a local domain \(local\[1\]\)/,
    );
    assertProblem(
      '[smtp]\nrelay_domains = ["x.branch.example"]\n[[etrn]]\ndomain = "branch.example"\nsubdomains = true\n',
      /smtp\.relay_domains\[1\]: "x\.branch\.example" is an ETRN domain \(etrn\[1\]\)/,
    );
    assertProblem(
      '[smtp]\nrelay_domains = ["a.example", "A.example"]\n',
      /smtp\.relay_domains\[2\]: relay domain "a\.example" is already used by smtp\.relay_domains\[1\]/,
    );
  });
  test('slow-client limits: durations above zero, min_data_rate a size that may be 0', () => {
    const c = configFromToml(
      '[smtp]\ncommand_timeout = "30s"\ndata_line_timeout = 90\nmin_data_rate = "1KiB"\n',
    );
    assert.equal(c.smtp.commandTimeoutMs, 30_000);
    assert.equal(c.smtp.dataLineTimeoutMs, 90_000);
    assert.equal(c.smtp.minDataRate, 1024);
    assert.equal(configFromToml('[smtp]\nmin_data_rate = 0\n').smtp.minDataRate, 0);
    assertProblem(
      '[smtp]\ncommand_timeout = "0s"\n',
      /smtp\.command_timeout: expected a duration greater than zero/,
    );
    assertProblem('[smtp]\ndata_line_timeout = "soon"\n', /smtp\.data_line_timeout: /);
    assertProblem('[smtp]\nmin_data_rate = -1\n', /smtp\.min_data_rate: /);
  });
  test('two listeners on the same address clash; port 0 never does', () => {
    assertProblem(
      '[smtp]\nlisten = ["0.0.0.0:2525"]\nsubmission = ["127.0.0.1:2525"]\n',
      /smtp\.submission\[1\]: 127\.0\.0\.1:2525 clashes with smtp\.listen\[1\]/,
    );
    assertProblem(
      '[odmr]\nlisten = ["127.0.0.1:2525"]\n',
      /odmr\.listen\[1\]: .* clashes with smtp\.listen\[1\]/,
    );
    const c = configFromToml(
      '[smtp]\nlisten = ["127.0.0.1:0"]\nsubmission = ["127.0.0.1:0"]\n[odmr]\nlisten = ["127.0.0.1:0"]\n',
    );
    assert.equal(c.smtp.submission[0]?.port, 0);
  });
});

test('relative state paths follow data_dir, operator files follow the config file', () => {
  const sub = join(dir, 'etc');
  mkdirSync(sub, { recursive: true });
  writeFileSync(join(sub, 'u.pass'), 'pw');
  const file = join(sub, 'paths.toml');
  writeFileSync(
    file,
    'data_dir = "/srv/lm"\n[[user]]\nname = "u"\npassword_file = "u.pass"\n[queue]\npaths = ["a"]\n',
  );
  const c = loadConfig({ file });
  assert.equal(c.users[0]?.password, 'pw');
  assert.deepEqual(c.queue.paths, ['/srv/lm/a']);
});

describe('[[access]], client rates and [[user]] addresses', () => {
  test('rules are read in order with their patterns', () => {
    const c = configFromToml(`
[[access]]
client = ["192.0.2.0/24", "2001:db8::/32"]
action = "reject"
text = "go away"
[[access]]
sender = ["<>", "Bad@X.example", "spammer.example", "@only.example", "mailer-daemon@"]
action = "defer"
[[access]]
recipient = ["info@example.test"]
action = "permit"
`);
    assert.equal(c.access.length, 3);
    assert.deepEqual(
      c.access.map((r) => [r.on, r.action, r.text]),
      [
        ['client', 'reject', 'go away'],
        ['sender', 'defer', undefined],
        ['recipient', 'permit', undefined],
      ],
    );
    const sender = c.access[1]!;
    assert.ok(sender.on === 'sender');
    assert.deepEqual(sender.patterns, [
      { kind: 'null' },
      { kind: 'address', address: 'bad@x.example' },
      { kind: 'domain', domain: 'spammer.example', subdomains: true },
      { kind: 'domain', domain: 'only.example', subdomains: false },
      { kind: 'local', local: 'mailer-daemon' },
    ]);
  });

  test('a bad CIDR, an empty table or list, an unknown action, two kinds in one table are refused', () => {
    assertProblem(
      '[[access]]\nclient = ["192.0.2.0/33"]\naction = "reject"\n',
      /^config\.toml: access\[1\]\.client\[1\]: expected a CIDR block/,
    );
    assertProblem('[[access]]\naction = "reject"\n', /^config\.toml: access\[1\]: names nothing to match/);
    assertProblem(
      '[[access]]\nclient = []\naction = "reject"\n',
      /access\[1\]\.client: expected at least one entry/,
    );
    assertProblem(
      '[[access]]\nsender = ["a@b.example"]\naction = "refuse"\n',
      'config.toml: access[1].action: expected one of "reject", "defer", "permit", got "refuse"',
    );
    assertProblem('[[access]]\nsender = ["a@b.example"]\n', /access\[1\]\.action: required/);
    assertProblem(
      '[[access]]\nsender = ["a@b.example"]\nrecipient = ["c@d.example"]\naction = "reject"\n',
      /access\[1\]\.recipient: one \[\[access\]\] table matches one thing/,
    );
    assertProblem(
      '[[access]]\nrecipient = ["<>"]\naction = "reject"\n',
      /access\[1\]\.recipient\[1\]: expected an address/,
    );
    assertProblem(
      '[[access]]\nsender = ["a@"]\naction = "permit"\ntext = "hi"\n',
      /access\[1\]\.text: a permit sends no reply/,
    );
    assertProblem(
      '[[access]]\nsender = ["a@"]\naction = "reject"\ntext = "two\\nlines"\n',
      /access\[1\]\.text: expected printable ASCII/,
    );
    assertProblem(
      '[[access]]\nsender = ["x"]\naction = "reject"\nsenders = 1\n',
      /access\[1\]\.senders: unknown key \(did you mean "sender"\?\)/,
    );
  });

  test('rates: "N/period" with a duration or a unit; 0 is off; exceptions default to relay_networks and loopback', () => {
    const c = configFromToml(`
[smtp]
relay_networks = ["10.0.0.0/8"]
client_connection_rate = "60/1m"
client_message_rate = "5/2s"
client_recipient_rate = 0
`);
    assert.deepEqual(c.smtp.clientConnectionRate, { count: 60, periodMs: 60_000 });
    assert.deepEqual(c.smtp.clientMessageRate, { count: 5, periodMs: 2_000 });
    assert.equal(c.smtp.clientRecipientRate, undefined);
    assert.deepEqual(
      c.smtp.clientRateExceptions.map((x) => x.text),
      ['10.0.0.0/8', '127.0.0.0/8', '::1/128'],
    );
    assert.deepEqual(configFromToml('[smtp]\nclient_message_rate = "100/h"\n').smtp.clientMessageRate, {
      count: 100,
      periodMs: 3_600_000,
    });
    assert.deepEqual(configFromToml('[smtp]\nclient_rate_exceptions = []\n').smtp.clientRateExceptions, []);
    assert.equal(configFromToml('').smtp.clientConnectionRate, undefined, 'off by default');
    assertProblem(
      '[smtp]\nclient_message_rate = "lots"\n',
      /smtp\.client_message_rate: expected a rate like "60\/1m"/,
    );
    assertProblem('[smtp]\nclient_message_rate = "0/1m"\n', /smtp\.client_message_rate: expected a rate/);
    assertProblem(
      '[smtp]\nclient_rate_exceptions = ["x"]\n',
      /smtp\.client_rate_exceptions\[1\]: expected a CIDR/,
    );
  });

  test('[[user]] addresses: addresses and @domain entries', () => {
    const c = configFromToml(
      '[[user]]\nname = "ann"\npassword = "p"\naddresses = ["Ann@example.com", "@example.org"]\n[[user]]\nname = "ben"\npassword = "q"\n',
    );
    assert.deepEqual(c.users[0]!.addresses, [
      { kind: 'address', address: 'ann@example.com' },
      { kind: 'domain', domain: 'example.org', subdomains: false },
    ]);
    assert.equal(c.users[1]!.addresses, undefined);
    assertProblem(
      '[[user]]\nname = "ann"\npassword = "p"\naddresses = ["example.org"]\n',
      /user\[1\]\.addresses\[1\]: expected an address "ann@example\.com" or a whole domain "@example\.org"/,
    );
    assertProblem(
      '[[user]]\nname = "ann"\npassword = "p"\naddresses = []\n',
      /user\[1\]\.addresses: expected at least one entry/,
    );
  });
});
