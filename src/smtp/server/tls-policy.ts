// The TLS policy of every server-side listener (STARTTLS on the MTA, submission and ODMR
// listeners, and the implicit-TLS submissions listener): what a scanner such as testssl.sh
// checks. By default only forward-secret AEAD suites (ECDHE with AES-GCM or ChaCha20-Poly1305
// for TLS 1.2; TLS 1.3's suites, all of which are), TLS 1.2 as the floor, the server's order of
// preference rather than the client's, and no renegotiation (a client-initiated renegotiation
// costs the server a full handshake each time: a cheap denial of service).
// Invariant: every server SecureContext is built here, so no listener can miss a rule.
// Fails: createSecureContext throws on a key that does not fit its certificate, an unknown
// protocol version or a cipher list OpenSSL cannot match (the configuration checks these at
// load time, so a daemon never meets them at the first STARTTLS).

import { constants } from 'node:crypto';
import * as tls from 'node:tls';

/** TLS 1.2 suites offered by default, in the server's order of preference (TLS 1.3 keeps OpenSSL's). */
export const DEFAULT_SERVER_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export type TlsMinVersion = 'TLSv1.2' | 'TLSv1.3';

export interface ServerTlsOptions {
  /** PEM private key and certificate chain. */
  key: string;
  cert: string;
  /** Lowest protocol version accepted (default TLSv1.2). */
  minVersion?: TlsMinVersion | undefined;
  /**
   * OpenSSL cipher list for TLS 1.2 (default DEFAULT_SERVER_CIPHERS). TLS 1.3 suites (names
   * starting with TLS_) may be listed to restrict those too; otherwise OpenSSL's TLS 1.3 suites.
   */
  ciphers?: string | undefined;
}

/** The SecureContext options for a server listener under this policy. */
export function serverContextOptions(o: ServerTlsOptions): tls.SecureContextOptions {
  return {
    key: o.key,
    cert: o.cert,
    minVersion: o.minVersion ?? 'TLSv1.2',
    ciphers: o.ciphers ?? DEFAULT_SERVER_CIPHERS,
    honorCipherOrder: true,
    // RFC 5746 secure renegotiation is still announced (testssl.sh checks that), but any
    // renegotiation the client starts is refused with a no_renegotiation alert.
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
  };
}

/** A server SecureContext under this policy; throws like tls.createSecureContext. */
export function serverSecureContext(o: ServerTlsOptions): tls.SecureContext {
  return tls.createSecureContext(serverContextOptions(o));
}
