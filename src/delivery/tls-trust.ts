// The certificate authorities outbound TLS trusts where it checks certificates (MTA-STS MX
// hosts and policy servers, verify_tls routes): the PEM file of delivery.tls_ca_file, or else the
// system's store — the first bundle found at the usual Debian, Red Hat and BSD paths, or Node's
// built-in copy of the Mozilla roots where none exists.
// Invariant: built once per start; the SecureContext is shared by every connection, so no
// handshake parses the bundle again.
// Fails: never; a system bundle that cannot be read falls back to Node's roots.

import { readFileSync } from 'node:fs';
import tls from 'node:tls';

const SYSTEM_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/cert.pem',
];

export interface OutboundTrust {
  /** The PEM text (or Node's roots) for APIs that take `ca`. */
  ca: string | string[];
  /** A context holding only that trust store, for tls.connect's `secureContext`. */
  context: tls.SecureContext;
  /** Where the store came from, for the start-up log. */
  source: string;
}

export function outboundTrust(configured: { file: string; text: string } | undefined): OutboundTrust {
  let ca: string | string[] = [...tls.rootCertificates];
  let source = "Node's built-in Mozilla roots";
  if (configured) {
    ca = configured.text;
    source = configured.file;
  } else {
    for (const f of SYSTEM_BUNDLES) {
      try {
        ca = readFileSync(f, 'utf8');
        source = f;
        break;
      } catch {
        // not this system's path: the next one
      }
    }
  }
  return { ca, context: tls.createSecureContext({ ca }), source };
}
