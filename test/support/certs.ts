// Test TLS material: one self-signed certificate for "localhost" (SAN DNS:localhost,
// IP:127.0.0.1, IP:::1) generated once per process with `selfsigned` and shared by every
// test. Tests that need files get them written into their own temp dir.
// Invariant: never used outside tests; the key is throwaway, generated at run time.
// Failure: generation errors reject the promise (and every later call, since it is cached).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';

export interface TestCert {
  /** PEM private key. */
  key: string;
  /** PEM certificate. */
  cert: string;
}

const cached = new Map<'ec' | 'rsa', Promise<TestCert>>();

/**
 * The process-wide test certificate (valid from an hour ago for a year): P-256 by default, or
 * RSA 2048 (what most operators have, and what static-RSA cipher suites would need).
 */
export function makeTestCert(keyType: 'ec' | 'rsa' = 'ec'): Promise<TestCert> {
  const hit = cached.get(keyType);
  if (hit) return hit;
  const made = generate([{ name: 'commonName', value: 'localhost' }], {
    ...(keyType === 'ec'
      ? { keyType: 'ec' as const, curve: 'P-256' as const }
      : { keyType: 'rsa' as const, keySize: 2048 }),
    algorithm: 'sha256',
    // Backdated so that a clock a little behind the generator's still accepts it.
    notBeforeDate: new Date(Date.now() - 3_600_000),
    notAfterDate: new Date(Date.now() + 365 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
          { type: 7, ip: '::1' },
        ],
      },
    ],
  }).then((pems) => ({ key: pems.private, cert: pems.cert }));
  cached.set(keyType, made);
  return made;
}

/** Writes the test certificate as `cert.pem` and `key.pem` into `dir`; returns their paths. */
export async function writeTestCertFiles(dir: string): Promise<{ certFile: string; keyFile: string }> {
  const { key, cert } = await makeTestCert();
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  writeFileSync(certFile, cert);
  writeFileSync(keyFile, key, { mode: 0o600 });
  return { certFile, keyFile };
}

/** The `[tls]` table of a test configuration whose files `tlsFiles` provides. */
export const TLS_TOML = '[tls]\ncert = "cert.pem"\nkey = "key.pem"';

/** `cert.pem` and `key.pem` of the test certificate, for a test daemon's `files`. */
export async function tlsFiles(keyType: 'ec' | 'rsa' = 'ec'): Promise<Record<string, string>> {
  const { cert, key } = await makeTestCert(keyType);
  return { 'cert.pem': cert, 'key.pem': key };
}
