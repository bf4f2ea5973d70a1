// An MTA-STS policy server for tests of a real `logmta serve`: node:https on port 443 of a
// loopback address of its own (as mx-hosts.ts gives MX hosts port 25), with a certificate for
// mta-sts.<domain> from the test's CA, serving `policy` at /.well-known/mta-sts.txt as
// text/plain. The policy can be changed, and the server stopped and started again on the same
// address (a policy server that is down refuses connections).
// Invariant: listens on loopback only; `close()` is the caller's. Counts the requests it got.
// Fails: rejects when port 443 cannot be bound (not root) or 20 addresses were all taken.

import https from 'node:https';
import { onFreeAddress } from './mx-hosts.js';
import type { TestCa } from './test-ca.js';

export interface PolicyServer {
  /** The address mta-sts.<domain> must resolve to. */
  host: string;
  /** The policy file served (changes apply to the next request). */
  policy: string;
  /** Requests for the policy so far, over every time the server was up. */
  requests: number;
  /** Stops listening (connections are then refused). */
  down(): Promise<void>;
  /** Listens again on the same address. */
  up(): Promise<void>;
  close(): Promise<void>;
}

export async function startPolicyServer(domain: string, ca: TestCa, policy: string): Promise<PolicyServer> {
  const creds = await ca.issue([`mta-sts.${domain}`]);
  let server: https.Server | undefined;
  const s: PolicyServer = {
    host: '',
    policy,
    requests: 0,
    down: async () => {
      const srv = server;
      server = undefined;
      if (!srv) return;
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    },
    up: () => listen(s.host),
    close: () => s.down(),
  };
  const listen = (address: string): Promise<void> => {
    const srv = https.createServer(creds, (req, res) => {
      if (req.url !== '/.well-known/mta-sts.txt') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('no such file');
        return;
      }
      s.requests++;
      res.writeHead(200, { 'content-type': 'text/plain' }).end(s.policy);
    });
    return new Promise<void>((res, rej) => {
      srv.once('error', rej);
      srv.listen(443, address, () => {
        srv.off('error', rej);
        server = srv;
        res();
      });
    });
  };
  s.host = await onFreeAddress(async (a) => {
    await listen(a);
    return a;
  });
  return s;
}

/** A policy file: version STSv1, the mode, one mx line per pattern, max_age (default a week). */
export function stsPolicy(mode: 'enforce' | 'testing' | 'none', mx: string[], maxAge = 604_800): string {
  return ['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), `max_age: ${maxAge}`, ''].join(
    '\r\n',
  );
}
