// `logmta check` as a postmaster runs it before a start or a reload: a valid file says what the
// daemon would run (and what a public MTA should fix, as notices); an invalid one names every
// problem and exits 78 — an open relay (`relay_networks = ["0.0.0.0/0"]`) too, which `serve`
// refuses as well; a TLS key that does not belong to its certificate is caught here, not at the
// next start; a certificate that does not name the host name is a notice. ETRN subdomains of a
// public suffix ("co.uk": everyone's mail under it relayed to one customer) and a route to one of
// our own listeners (a loop) are refused by both.
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
  assert.match(ok.stdout, /outbound tls\s+MTA-STS on; certificates checked against the system CA store/);
  assert.match(ok.stdout, /etrn\s+branch\.example/);
  assert.doesNotMatch(ok.stdout, /notice:/);

  // Valid, but not what a public MTA should run with: said as notices, exit 0.
  const loose = join(dir, 'loose.toml');
  writeFileSync(loose, `hostname = "box"\ndata_dir = "${dir}/data"\n[smtp]\nlisten = ["0.0.0.0:2525"]\n`);
  const n = await runLogmta(['check', '--config', loose]);
  assert.equal(n.code, 0, n.stderr);
  assert.match(n.stdout, /notice: hostname "box" is not a fully qualified domain name/);
  assert.match(n.stdout, /notice: no \[tls\]: 0\.0\.0\.0:2525 offer no STARTTLS/);

  // A certificate for another name than the host's: verifying clients would refuse STARTTLS.
  const { cert, key } = await makeTestCert();
  writeFileSync(join(dir, 'cert.pem'), cert);
  writeFileSync(join(dir, 'key.pem'), key);
  const named = join(dir, 'named.toml');
  writeFileSync(
    named,
    `hostname = "mx.example"\ndata_dir = "${dir}/data"\n[tls]\ncert = "cert.pem"\nkey = "key.pem"\n`,
  );
  const c = await runLogmta(['check', '--config', named]);
  assert.equal(c.code, 0, c.stderr);
  assert.match(
    c.stdout,
    /notice: the TLS certificate \S+cert\.pem does not name hostname "mx\.example" \(it names DNS:localhost/,
  );

  // An open relay by configuration: check refuses it, and so does serve.
  const open = join(dir, 'open.toml');
  writeFileSync(open, `data_dir = "${dir}/data"\n[smtp]\nrelay_networks = ["0.0.0.0/0"]\n`);
  for (const cmd of ['check', 'serve']) {
    const r = await runLogmta([cmd, '--config', open]);
    assert.equal(r.code, 78, `${cmd}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /smtp\.relay_networks\[1\]: 0\.0\.0\.0\/0 would let every address relay/);
  }

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

test('logmta check and serve refuse ETRN subdomains of a public suffix, and a route to our own listener', async () => {
  const dir = makeTempDir('logmta-check-');
  const cases: Array<[string, RegExp]> = [
    [
      '[[etrn]]\ndomain = "co.uk"\nsubdomains = true\n',
      /etrn\[1\]\.subdomains: "co\.uk" is a public suffix: with subdomains = true mail for every domain under it \(anyone's, e\.g\. another\.co\.uk\) would be taken from anyone and relayed/,
    ],
    ['[[etrn]]\ndomain = "COM."\nsubdomains = true\n', /etrn\[1\]\.subdomains: "com" is a public suffix/],
    [
      '[smtp]\nlisten = ["0.0.0.0:2525"]\n[[route]]\ndomain = "c.example"\nhost = "127.0.0.1:2525"\n',
      /route\[1\]\.host: 127\.0\.0\.1:2525 is one of this MTA's own listeners: mail sent there comes back here \(a loop\)/,
    ],
  ];
  for (const [i, [toml, problem]] of cases.entries()) {
    const file = join(dir, `bad${i}.toml`);
    writeFileSync(file, `hostname = "mx.example"\ndata_dir = "${dir}/data"\n${toml}`);
    for (const cmd of ['check', 'serve']) {
      const r = await runLogmta([cmd, '--config', file]);
      assert.equal(r.code, 78, `${cmd} ${toml}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, problem);
    }
  }
});

test('logmta check says whether DANE can apply: the resolver on loopback, trusted by the operator, or not', async () => {
  const dir = makeTempDir('logmta-check-dane-');
  const run = async (toml: string) => {
    const f = join(dir, 'c.toml');
    writeFileSync(f, `hostname = "mx.example"\ndata_dir = "${dir}/data"\n${toml}`);
    const r = await runLogmta(['check', '--config', f]);
    assert.equal(r.code, 0, r.stderr);
    return /^ {2}dane {10}(.*)$/m.exec(r.stdout)?.[1] ?? `no dane line in ${r.stdout}`;
  };
  assert.match(
    await run('[dns]\nservers = ["127.0.0.1:5353"]\n'),
    /^DANE on; DNSSEC validation believed from 127\.0\.0\.1:5353 \(on loopback\): it must be a validating resolver$/,
  );
  assert.match(
    await run('[dns]\nservers = ["192.0.2.53"]\n'),
    /^DANE on, but \[dns\] servers 192\.0\.2\.53:53 is not on loopback: its DNSSEC validation is not believed and DANE never applies/,
  );
  assert.match(
    await run('[dns]\nservers = ["192.0.2.53"]\ndnssec = "always"\n'),
    /believed from 192\.0\.2\.53:53 \(\[dns\] dnssec = "always"\)/,
  );
  assert.match(await run('[dns]\nservers = ["127.0.0.1"]\ndnssec = "never"\n'), /\[dns\] dnssec = "never"/);
  assert.equal(await run('[delivery]\ndane = false\n'), 'DANE off (delivery.dane = false)');
});
