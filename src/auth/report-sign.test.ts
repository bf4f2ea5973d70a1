// Which reports get signed, with which keys, and that signing never drops one: the report signer
// on its own, on reports built by dsn.ts (the end-to-end check with real verifiers is
// test/auth/report-sign.test.ts).
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import type { DkimKeyConfig } from '../config/schema.js';
import { buildDsn } from '../delivery/dsn.js';
import { nullLogger } from '../log.js';
import { makeReportSigner } from './report-sign.js';

const ed = generateKeyPairSync('ed25519').privateKey;
const key = (domain: string, selector: string, extra: Partial<DkimKeyConfig> = {}): DkimKeyConfig => ({
  domain,
  selector,
  subdomains: false,
  users: undefined,
  networks: undefined,
  keyFile: '',
  key: ed,
  algorithm: 'ed25519-sha256',
  record: '',
  ...extra,
});

function report(host: string): Buffer {
  return buildDsn({
    reportingMta: host,
    returnPath: 'bob@sender.test',
    arrivalDate: 0,
    now: 1_000,
    recipients: [{ address: 'gone@dst.test', action: 'failed', status: '5.1.1' }],
    original: [Buffer.from('From: bob@sender.test\r\nSubject: hi\r\n\r\nbody\r\n')],
  }).data;
}

const selectors = (b: Buffer) =>
  [...b.toString('latin1').matchAll(/^DKIM-Signature:[\s\S]*? s=([a-z0-9]+);/gm)].map((x) => x[1]);

describe('the report signer', () => {
  const sign = makeReportSigner({
    keys: [
      key('example.net', 'p', { subdomains: true }),
      key('mx.example.net', 'own', { users: ['alice'], networks: [] }),
      key('other.test', 'o'),
    ],
    logger: nullLogger,
  });

  test("signs with every key of the host name's domain, restricted keys too, and keeps the report after them", () => {
    const r = report('mx.example.net');
    const out = sign(r, 1_000);
    assert.deepEqual(selectors(out), ['p', 'own']);
    assert.ok(out.subarray(out.length - r.length).equals(r), 'the report follows its signatures unchanged');
  });

  test('a host name no key matches: the same Buffer back', () => {
    const r = report('mx.unsigned.test');
    assert.equal(sign(r, 1_000), r);
  });

  test('a key that cannot sign: logged, and the report goes on unsigned', () => {
    const errors: string[] = [];
    const logger = { ...nullLogger, error: (_: unknown, msg: string) => errors.push(msg) };
    const broken = makeReportSigner({
      keys: [key('mx.example.net', 'x', { key: generateKeyPairSync('x25519').privateKey })],
      logger,
    });
    const r = report('mx.example.net');
    assert.equal(broken(r, 1_000), r);
    assert.deepEqual(errors, ['DKIM signing of a report failed; the report goes unsigned']);
  });
});
