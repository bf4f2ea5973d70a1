// Fetching an MTA-STS policy (RFC 8461 §3.3): HTTPS GET of
// https://mta-sts.<domain>/.well-known/mta-sts.txt, the name resolved through the daemon's
// resolver (the same one MX lookups use), the certificate checked against the outbound trust
// store for that name, and the answer taken only as it must be: 200, no redirect followed,
// Content-Type text/plain, at most MAX_POLICY_BYTES, all within one deadline.
// Invariant: one request per call, no connection kept, no HTTP cache; the text returned is
// parsed by the caller (policy.ts).
// Fails: rejects with MtaError MTA_STS_FETCH (transient) saying why.

import type { LookupAddress } from 'node:dns';
import https from 'node:https';
import type tls from 'node:tls';
import { errorText, MtaError } from '../../errors.js';
import type { DnsResolver } from '../../dns/types.js';

/** RFC 8461 §3.3 lets senders limit the size; 64 KiB is what the RFC's authors' code uses. */
export const MAX_POLICY_BYTES = 64 * 1024;

export interface FetchOptions {
  resolver: DnsResolver;
  /** The trust store certificates are checked against (tls-trust.ts). */
  ca: tls.SecureContextOptions['ca'];
  /** The whole request, from the lookup to the last byte (default 10 s). */
  timeoutMs?: number;
  /** 443 on the Internet; tests may point it elsewhere. */
  port?: number;
}

function fail(host: string, why: string, cause?: unknown): MtaError {
  return new MtaError('MTA_STS_FETCH', 'transient', `policy fetch from ${host}: ${why}`, { cause });
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/** net's `lookup` option answered by the resolver: A first, then AAAA. */
function lookupWith(resolver: DnsResolver) {
  return (hostname: string, options: { all?: boolean }, cb: LookupCallback): void => {
    void (async () => {
      const found: LookupAddress[] = [];
      let last: unknown;
      for (const [family, ask] of [
        [4, () => resolver.resolve4(hostname)],
        [6, () => resolver.resolve6(hostname)],
      ] as const) {
        try {
          for (const address of await ask()) found.push({ address, family });
        } catch (e) {
          last = e;
        }
      }
      if (found.length === 0) {
        const err = Object.assign(new Error(`no address for ${hostname}: ${errorText(last)}`), {
          code: 'ENOTFOUND',
        });
        cb(err, options.all ? [] : '', 4);
        return;
      }
      if (options.all) cb(null, found);
      else cb(null, found[0]!.address, found[0]!.family);
    })();
  };
}

/** The policy text of `domain`, as served. */
export function fetchPolicy(domain: string, o: FetchOptions): Promise<string> {
  const host = `mta-sts.${domain}`;
  const timeoutMs = o.timeoutMs ?? 10_000;
  return new Promise<string>((resolve, reject) => {
    let settled = false;
    const done = (e: MtaError | undefined, text?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      if (e) reject(e);
      else resolve(text ?? '');
    };
    const req = https.request(
      {
        host,
        port: o.port ?? 443,
        path: '/.well-known/mta-sts.txt',
        method: 'GET',
        servername: host,
        ca: o.ca,
        rejectUnauthorized: true,
        agent: false,
        lookup: lookupWith(o.resolver) as never,
        headers: { 'user-agent': 'logmta', accept: 'text/plain' },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        // §3.3: redirects MUST NOT be followed; anything but 200 is no policy.
        if (status !== 200) {
          const where =
            status >= 300 && status < 400 ? ` (redirect to ${res.headers.location ?? '?'} not followed)` : '';
          done(fail(host, `HTTP status ${status}${where}`));
          return;
        }
        const type = (res.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (type !== 'text/plain') {
          done(
            fail(host, `Content-Type ${JSON.stringify(res.headers['content-type'] ?? '')} is not text/plain`),
          );
          return;
        }
        const declared = Number(res.headers['content-length']);
        if (declared > MAX_POLICY_BYTES) {
          done(fail(host, `policy of ${declared} bytes is larger than ${MAX_POLICY_BYTES}`));
          return;
        }
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_POLICY_BYTES) done(fail(host, `policy larger than ${MAX_POLICY_BYTES} bytes`));
          else parts.push(c);
        });
        res.on('end', () => done(undefined, Buffer.concat(parts).toString('utf8')));
        res.on('error', (e) => done(fail(host, errorText(e), e)));
      },
    );
    const timer = setTimeout(() => done(fail(host, `no complete answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => done(fail(host, errorText(e), e)));
    req.end();
  });
}
