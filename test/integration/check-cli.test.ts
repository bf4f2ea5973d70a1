// `logmta check` as a postmaster runs it before a start or a reload: a valid file says what the
// daemon would run; an invalid one names every problem and exits 78; a TLS key that does not
// belong to its certificate is caught here, not at the next start.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeTempDir, runLogmta } from '../support/daemon.js';
import { makeTestCert } from '../support/certs.js';

test('logmta check: valid, invalid, and a key that is not the certificate’s', async () => {
  const dir = makeTempDir('logmta-check-');
  const good = join(dir, 'good.toml');
  writeFileSync(
    good,
    `hostname = "mx.example"
data_dir = "${dir}/data"
[smtp]
listen = ["127.0.0.1:2525"]
[[route]]
domain = "example.net"
host = "192.0.2.7:25"
[[etrn]]
domain = "branch.example"
`,
  );
  const ok = await runLogmta(['check', '--config', good]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /: valid\n/);
  assert.match(ok.stdout, /hostname\s+mx\.example/);
  assert.match(ok.stdout, /routes\s+example\.net → 192\.0\.2\.7:25/);
  assert.match(ok.stdout, /etrn\s+branch\.example/);

  const bad = join(dir, 'bad.toml');
  writeFileSync(bad, `[queue]\nretry = ["soon"]\nno_such_key = 1\n`);
  const no = await runLogmta(['check', '--config', bad]);
  assert.equal(no.code, 78);
  assert.match(no.stderr, /queue\.retry/);
  assert.match(no.stderr, /queue\.no_such_key: unknown key/);

  const ec = await makeTestCert('ec');
  const rsa = await makeTestCert('rsa');
  writeFileSync(join(dir, 'cert.pem'), ec.cert);
  writeFileSync(join(dir, 'other.key'), rsa.key, { mode: 0o600 });
  const tls = join(dir, 'tls.toml');
  writeFileSync(tls, `data_dir = "${dir}/data"\n[tls]\ncert = "cert.pem"\nkey = "other.key"\n`);
  const mismatch = await runLogmta(['check', '--config', tls]);
  assert.equal(mismatch.code, 78, mismatch.stdout);
  assert.match(mismatch.stderr, /tls\.key: does not fit the certificate/);
});
