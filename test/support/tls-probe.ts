// A TLS scanner for tests, in the spirit of testssl.sh but in-process and fast: it opens a few
// connections to an SMTP listener (STARTTLS, or TLS from the first byte), each offering only
// what one finding needs (OpenSSL security level 0, so the client itself refuses nothing), and
// reports what the server accepted: TLS 1.0/1.1, static-RSA (no forward secrecy) and non-AEAD
// (CBC) suites, the client's cipher order winning over the server's, and client-initiated
// renegotiation. The client is Node's (OpenSSL), so a finding is what `openssl s_client` would see.
// Invariant: every probe is bounded by a timeout; a refused handshake is not a finding.
// Fails: rejects only when the server does not speak SMTP as expected before the handshake.

import net from 'node:net';
import tls from 'node:tls';

export interface ProbeTarget {
  port: number;
  host?: string;
  /** TLS from the first byte (port 465 style) instead of STARTTLS. */
  implicit?: boolean;
}

export interface Handshake {
  protocol: string;
  cipher: string;
}

const TIMEOUT_MS = 10_000;

function readUntil(s: net.Socket, re: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(
      () => done(new Error(`no ${re} within ${TIMEOUT_MS} ms; got ${JSON.stringify(buf)}`)),
      TIMEOUT_MS,
    );
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      if (re.test(buf)) done(null);
    };
    const onEnd = (): void => done(new Error(`connection closed before ${re}; got ${JSON.stringify(buf)}`));
    function done(e: Error | null): void {
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onEnd);
      if (e) reject(e);
      else resolve(buf);
    }
    s.on('data', onData);
    s.once('close', onEnd);
  });
}

/** Opens a TLS connection with `opts`; resolves with the socket, or null when the handshake fails. */
export async function connectTls(t: ProbeTarget, opts: tls.ConnectionOptions): Promise<tls.TLSSocket | null> {
  const host = t.host ?? '127.0.0.1';
  const base: tls.ConnectionOptions = { rejectUnauthorized: false, servername: 'localhost', ...opts };
  let ts: tls.TLSSocket;
  if (t.implicit) {
    ts = tls.connect({ ...base, port: t.port, host });
  } else {
    const s = net.connect(t.port, host);
    s.on('error', () => {});
    await readUntil(s, /^220 [^\r\n]*\r\n/m);
    s.write('EHLO probe.test\r\n');
    await readUntil(s, /^250 [^\r\n]*\r\n/m);
    s.write('STARTTLS\r\n');
    await readUntil(s, /^220 [^\r\n]*\r\n/m);
    ts = tls.connect({ ...base, socket: s });
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ts.destroy();
      resolve(null);
    }, TIMEOUT_MS);
    ts.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(ts);
    });
    ts.once('error', () => {
      clearTimeout(timer);
      ts.destroy();
      resolve(null);
    });
  });
}

/** One handshake offering only `ciphers` (and protocol bounds): what was negotiated, or null. */
export async function handshake(
  t: ProbeTarget,
  ciphers: string,
  bounds: { minVersion?: tls.SecureVersion; maxVersion?: tls.SecureVersion } = {},
): Promise<Handshake | null> {
  const ts = await connectTls(t, { ciphers: `${ciphers}:@SECLEVEL=0`, ...bounds });
  if (ts === null) return null;
  const r = { protocol: ts.getProtocol() ?? '?', cipher: ts.getCipher().name };
  ts.destroy();
  return r;
}

/** Whether a TLS 1.2 client may renegotiate (client-initiated renegotiation: a DoS vector). */
export async function clientRenegotiates(t: ProbeTarget): Promise<boolean> {
  const ts = await connectTls(t, { maxVersion: 'TLSv1.2' });
  if (ts === null) throw new Error('no TLS 1.2 handshake to renegotiate');
  const r = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), TIMEOUT_MS);
    const settle = (v: boolean): void => {
      clearTimeout(timer);
      resolve(v);
    };
    ts.once('error', () => settle(false));
    ts.once('close', () => settle(false));
    if (!ts.renegotiate({ rejectUnauthorized: false }, (e) => settle(e == null))) settle(false);
  });
  ts.destroy();
  return r;
}

/** OpenSSL cipher strings for what each finding offers. */
export const STATIC_RSA = 'kRSA';
/** Every TLS 1.2 suite without an AEAD cipher: CBC (and NULL) suites. */
export const NON_AEAD = 'ALL:COMPLEMENTOFALL:!AESGCM:!CHACHA20:!AESCCM:!ARIAGCM';

/** Everything testssl.sh would flag here, as readable findings ([] = clean). */
export async function tlsFindings(t: ProbeTarget): Promise<string[]> {
  const out: string[] = [];
  for (const v of ['TLSv1', 'TLSv1.1'] as const) {
    const h = await handshake(t, 'ALL', { minVersion: v, maxVersion: v });
    if (h) out.push(`${v} accepted (${h.cipher})`);
  }
  const rsa = await handshake(t, STATIC_RSA, { maxVersion: 'TLSv1.2' });
  if (rsa) out.push(`static-RSA suite without forward secrecy accepted: ${rsa.cipher}`);
  const cbc = await handshake(t, NON_AEAD, { maxVersion: 'TLSv1.2' });
  if (cbc) out.push(`non-AEAD (CBC) suite accepted: ${cbc.cipher}`);
  // Two forward-secret AEAD suites in both orders: with server preference both give one answer.
  const a = 'ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-CHACHA20-POLY1305';
  const b = 'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384';
  const ab = await handshake(t, `${a}:${b}`, { maxVersion: 'TLSv1.2' });
  const ba = await handshake(t, `${b}:${a}`, { maxVersion: 'TLSv1.2' });
  if (ab && ba && ab.cipher !== ba.cipher)
    out.push(`no server cipher order: the client's first choice wins (${ab.cipher} / ${ba.cipher})`);
  if (await clientRenegotiates(t)) out.push('client-initiated renegotiation accepted');
  return out;
}
