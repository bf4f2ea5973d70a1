// The TLS of the STARTTLS listeners of a real `logmta serve` (RSA certificate, the common case)
// as a scanner sees it: no TLS 1.0/1.1, no static-RSA (no forward secrecy) or CBC suites, the
// server's cipher order, no client-initiated renegotiation — on the MTA, submission and ODMR
// listeners alike. The in-process probe (test/support/tls-probe.ts) always runs, and is shown
// to find all of that on a server with Node's default TLS settings (the policy before);
// testssl.sh runs too where it is installed (Debian package testssl.sh; ~40 s, bounded).
// Also the [tls] keys: min_version = "TLSv1.3" refuses TLS 1.2; ciphers replaces the list.
// Fails: listing the findings.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { makeTestCert, TLS_TOML, type TestCert } from '../support/certs.js';
import {
  makeTempDir,
  runTool,
  type SpawnedDaemon,
  spawnDaemon,
  startTestDaemon,
  toolPath,
} from '../support/daemon.js';
import { handshake, type ProbeTarget, tlsFindings } from '../support/tls-probe.js';

let cert: TestCert;
let d: SpawnedDaemon;
let odmrPort = 0;
const files = (): Record<string, string> => ({ 'cert.pem': cert.cert, 'key.pem': cert.key });

before(async () => {
  cert = await makeTestCert('rsa');
  d = await spawnDaemon({
    files: files(),
    toml: [
      '[smtp]',
      'listen = ["127.0.0.1:0"]',
      'submission = ["127.0.0.1:0"]',
      TLS_TOML,
      '[odmr]',
      'listen = ["127.0.0.1:0"]',
      '[[odmr.account]]',
      'user = "c"',
      'password = "p"',
      'domains = ["c.example"]',
    ].join('\n'),
  });
  odmrPort = Number(/ODMR \(ATRN\) on 127\.0\.0\.1:(\d+)/.exec(d.stderr())?.[1] ?? 0);
});

after(async () => {
  await d.stop();
});

/**
 * A STARTTLS server with Node's default cipher list and order and renegotiation — what logmta's
 * listeners had before — and TLS 1.0 allowed (security level 0), so every probe has a target.
 */
async function defaultsServer(): Promise<{ port: number; close(): void }> {
  const ctx = tls.createSecureContext({
    key: cert.key,
    cert: cert.cert,
    minVersion: 'TLSv1',
    ciphers: `${tls.DEFAULT_CIPHERS}:@SECLEVEL=0`,
  });
  const srv = net.createServer((s) => {
    s.on('error', () => {});
    s.write('220 defaults.test ESMTP\r\n');
    s.once('data', () => {
      s.write('250-defaults.test\r\n250 STARTTLS\r\n');
      s.once('data', () => {
        s.write('220 2.0.0 go\r\n');
        const t = new tls.TLSSocket(s, { isServer: true, secureContext: ctx });
        t.on('error', () => {});
      });
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as net.AddressInfo).port, close: () => srv.close() };
}

describe('TLS policy of the STARTTLS listeners', () => {
  test('the probe finds every weakness on a weak server with Node defaults (so a clean result means something)', async () => {
    const s = await defaultsServer();
    try {
      const f = await tlsFindings({ port: s.port });
      for (const what of [
        /^TLSv1 accepted/,
        /^TLSv1\.1 accepted/,
        /static-RSA/,
        /CBC/,
        /server cipher order/,
        /renegotiation/,
      ])
        assert.ok(
          f.some((x) => what.test(x)),
          `${what} not found on the defaults server: ${JSON.stringify(f)}`,
        );
    } finally {
      s.close();
    }
  });

  test('MTA listener: no TLS 1.0/1.1, no static RSA, no CBC, server order, no client renegotiation', async () => {
    assert.deepEqual(await tlsFindings({ port: d.port }), []);
  });

  test('submission and ODMR listeners: the same policy', async () => {
    assert.deepEqual(await tlsFindings({ port: d.submissionPort ?? 0 }), []);
    assert.ok(odmrPort > 0, d.stderr());
    assert.deepEqual(await tlsFindings({ port: odmrPort }), []);
  });

  test('TLS 1.3 and forward-secret AEAD TLS 1.2 suites are offered, in the server order', async () => {
    const t: ProbeTarget = { port: d.port };
    assert.equal((await handshake(t, 'ALL'))?.protocol, 'TLSv1.3');
    const h = await handshake(t, 'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256', {
      maxVersion: 'TLSv1.2',
    });
    assert.deepEqual(h, { protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES128-GCM-SHA256' });
  });

  const testssl = toolPath('testssl') ?? toolPath('testssl.sh');
  test('testssl.sh finds nothing to flag (protocols, cipher categories, forward secrecy, server order, renegotiation)', {
    skip: testssl ? false : 'testssl.sh is not installed',
    timeout: 300_000,
  }, async () => {
    const dir = makeTempDir('logmta-testssl-');
    try {
      const json = join(dir, 'out.json');
      const r = await runTool(
        testssl ?? 'testssl',
        [
          ...['--quiet', '--color', '0', '--warnings', 'off', '--jsonfile', json],
          ...['-p', '-s', '-f', '-P', '-R', '--starttls', 'smtp', `127.0.0.1:${d.port}`],
        ],
        { timeoutMs: 280_000 },
      );
      assert.equal(r.signal, null, `testssl.sh was cut at its time limit:\n${r.stdout}`);
      const found = new Map(
        (JSON.parse(readFileSync(json, 'utf8')) as { id: string; severity: string; finding: string }[]).map(
          (f) => [f.id, f],
        ),
      );
      const problems: string[] = [];
      const expect = (id: string, ok: (finding: string, severity: string) => boolean): void => {
        const f = found.get(id);
        if (!f || !ok(f.finding, f.severity))
          problems.push(`${id}: ${f ? `${f.severity} ${f.finding}` : 'missing'}`);
      };
      for (const id of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) expect(id, (f) => f.startsWith('not offered'));
      for (const id of [
        'cipherlist_NULL',
        'cipherlist_aNULL',
        'cipherlist_EXPORT',
        'cipherlist_LOW',
        'cipherlist_3DES_IDEA',
        'cipherlist_AVERAGE',
      ])
        expect(id, (f) => f.startsWith('not offered'));
      expect('PFS', (_f, sev) => sev === 'OK');
      expect('cipher_order', (f) => f === 'server');
      expect('secure_client_renego', (f) => f.startsWith('not vulnerable'));
      // Every TLS 1.2 suite the server lists is ECDHE and AEAD.
      expect('cipherorder_TLSv1_2', (f) =>
        f
          .split(/\s+/)
          .filter(Boolean)
          .every((c) => /^ECDHE-/.test(c) && /GCM|CHACHA20/.test(c)),
      );
      for (const [id, f] of found)
        if (['HIGH', 'CRITICAL'].includes(f.severity)) problems.push(`${id}: ${f.severity} ${f.finding}`);
      assert.deepEqual(problems, [], r.stdout);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('[tls] min_version and ciphers', () => {
  test('min_version = "TLSv1.3" refuses TLS 1.2; ciphers replaces the TLS 1.2 list', async () => {
    const a = await startTestDaemon({
      files: files(),
      toml: `${TLS_TOML}\nmin_version = "TLSv1.3"\n`,
    });
    const b = await startTestDaemon({
      files: files(),
      toml: `${TLS_TOML}\nciphers = "ECDHE-RSA-AES256-GCM-SHA384"\n`,
    });
    try {
      assert.equal(await handshake({ port: a.port }, 'ALL', { maxVersion: 'TLSv1.2' }), null);
      assert.equal((await handshake({ port: a.port }, 'ALL'))?.protocol, 'TLSv1.3');
      assert.deepEqual(
        await handshake({ port: b.port }, 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384', {
          maxVersion: 'TLSv1.2',
        }),
        {
          protocol: 'TLSv1.2',
          cipher: 'ECDHE-RSA-AES256-GCM-SHA384',
        },
      );
      assert.equal(
        await handshake({ port: b.port }, 'ECDHE-RSA-AES128-GCM-SHA256', { maxVersion: 'TLSv1.2' }),
        null,
      );
      // The rest of the policy stays: server order and no renegotiation with the operator's list.
      assert.deepEqual(await tlsFindings({ port: b.port }), []);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});
