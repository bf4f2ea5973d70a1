// A certificate authority of the test's own, for certificates that must verify: MTA-STS policy
// servers and MX hosts whose names the client checks. `makeTestCa()` makes a CA (generated with
// `selfsigned`); `issue(names)` signs a server certificate for those DNS names with it. The CA's
// PEM is what a daemon under test gets as delivery.tls_ca_file.
// Invariant: never used outside tests; keys are throwaway, generated at run time; certificates
// are valid from an hour ago for a year.
// Fails: generation errors reject.

import { generate } from 'selfsigned';

export interface TestCa {
  /** The CA certificate (PEM): the trust store of the client under test. */
  cert: string;
  /** A server certificate and key for `names` (SAN DNS entries), signed by this CA. */
  issue(names: string[]): Promise<{ cert: string; key: string }>;
}

const validity = () => ({
  notBeforeDate: new Date(Date.now() - 3_600_000),
  notAfterDate: new Date(Date.now() + 365 * 86_400_000),
});

export async function makeTestCa(name = 'logmta test CA'): Promise<TestCa> {
  const ca = await generate([{ name: 'commonName', value: name }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    ...validity(),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  return {
    cert: ca.cert,
    async issue(names) {
      const leaf = await generate([{ name: 'commonName', value: names[0] ?? 'localhost' }], {
        keyType: 'ec',
        curve: 'P-256',
        algorithm: 'sha256',
        ...validity(),
        ca: { key: ca.private, cert: ca.cert },
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', serverAuth: true },
          { name: 'subjectAltName', altNames: names.map((value) => ({ type: 2 as const, value })) },
        ],
      });
      return { cert: leaf.cert, key: leaf.private };
    },
  };
}
