// The policy fetch against a real HTTPS server on loopback (node:https, a test CA), the name
// resolved through an injected resolver: what RFC 8461 §3.3 lets through and what it does not.
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { StaticResolver } from '../../../test/support/static-resolver.js';
import { makeTestCa, type TestCa } from '../../../test/support/test-ca.js';
import { fetchPolicy, MAX_POLICY_BYTES } from './fetch.js';

const POLICY = 'version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('MTA-STS policy fetch (RFC 8461 §3.3)', () => {
  let ca: TestCa;
  let other: TestCa;
  let server: https.Server;
  let port = 0;
  let handler: Handler = () => {};
  const resolver = new StaticResolver({
    'mta-sts.sts.test': { A: ['127.0.0.1'] },
    'mta-sts.gone.test': 'ENOTFOUND',
  });
  const fetch = (domain = 'sts.test', o: { timeoutMs?: number; ca?: string } = {}) =>
    fetchPolicy(domain, {
      resolver,
      ca: o.ca ?? ca.cert,
      port,
      ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
    });

  before(async () => {
    ca = await makeTestCa();
    other = await makeTestCa('another CA');
    server = https.createServer(await ca.issue(['mta-sts.sts.test']), (req, res) => handler(req, res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test('200 text/plain from the well-known path is the policy', async () => {
    let path = '';
    handler = (req, res) => {
      path = req.url ?? '';
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(POLICY);
    };
    assert.equal(await fetch(), POLICY);
    assert.equal(path, '/.well-known/mta-sts.txt');
  });

  test('a redirect is not followed', async () => {
    handler = (_req, res) => res.writeHead(301, { location: 'https://elsewhere.test/p.txt' }).end();
    await assert.rejects(
      fetch(),
      /HTTP status 301 \(redirect to https:\/\/elsewhere.test\/p.txt not followed\)/,
    );
  });

  test('another status is no policy', async () => {
    handler = (_req, res) => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    await assert.rejects(fetch(), /HTTP status 404/);
  });

  test('a Content-Type other than text/plain is no policy', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end(POLICY);
    await assert.rejects(fetch(), /not text\/plain/);
  });

  test('a body over the size limit is refused, with or without Content-Length', async () => {
    const big = 'x'.repeat(MAX_POLICY_BYTES + 1);
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(big);
    await assert.rejects(fetch(), /larger than/);
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
      res.write(big.slice(0, 40_000));
      res.end(big.slice(40_000));
    };
    await assert.rejects(fetch(), /larger than/);
  });

  test('a certificate from a CA not trusted is refused', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(POLICY);
    await assert.rejects(fetch('sts.test', { ca: other.cert }), /certificate/i);
  });

  test('a certificate for another name is refused', async () => {
    const r2 = new StaticResolver({ 'mta-sts.wrong.test': { A: ['127.0.0.1'] } });
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(POLICY);
    await assert.rejects(
      fetchPolicy('wrong.test', { resolver: r2, ca: ca.cert, port }),
      /mta-sts.wrong.test/,
    );
  });

  test('a name that does not resolve fails without a connection', async () => {
    await assert.rejects(fetch('gone.test'), /no address for mta-sts.gone.test/);
  });

  test('a server that never answers fails at the deadline', async () => {
    handler = () => {}; // holds the request
    await assert.rejects(fetch('sts.test', { timeoutMs: 300 }), /no complete answer within 300 ms/);
  });
});
