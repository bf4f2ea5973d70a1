// Independent DKIM verifiers and signers from Debian for the tests: dkimpy (python3-dkim, through
// test/support/dkimpy.py) and opendkim in test mode (`opendkim -t`), both asking the tests' DNS
// server for keys; plus key generation and the DNS records to publish.
// Invariant: a tool that is missing, or hidden by LOGMTA_TEST_HIDE_TOOLS (test/support/tools.ts),
// makes the *Missing() helpers say so (for `{ skip }`), never a false pass; results are parsed
// from the tools' own output.

import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasTool, REPO_ROOT, runTool } from './daemon.js';
import type { TestDnsServer } from './dns-server.js';

export const PYTHON = '/usr/bin/python3';
export const OPENDKIM = '/usr/sbin/opendkim';
const DKIMPY = join(REPO_ROOT, 'test', 'support', 'dkimpy.py');

export interface Verdict {
  result: string;
  domain: string;
  selector: string;
}

/** Why dkimpy cannot run here, or undefined. */
export async function dkimpyMissing(): Promise<string | undefined> {
  if (!hasTool(PYTHON)) return `${PYTHON} not installed (Debian's python3, where python3-dkim lives)`;
  const r = await runTool(PYTHON, ['-c', 'import dkim, dns.resolver, nacl']).catch(() => undefined);
  return r?.code === 0 ? undefined : 'python3-dkim, python3-dnspython or python3-nacl not installed';
}

export function opendkimMissing(): string | undefined {
  return hasTool('opendkim') || hasTool(OPENDKIM) ? undefined : 'opendkim not installed';
}

/** dkimpy's verdict on every DKIM-Signature of `message`. */
export async function dkimpyVerify(message: Buffer | string, dns: TestDnsServer): Promise<Verdict[]> {
  const r = await runTool(PYTHON, [DKIMPY, 'verify', String(dns.port)], { input: message });
  if (r.code !== 0 && r.code !== 1) throw new Error(`dkimpy failed (${r.code}): ${r.stderr}`);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^(\w+) d=(\S*) s=(\S*)/.exec(l);
      return { result: m?.[1] ?? l, domain: m?.[2] ?? '', selector: m?.[3] ?? '' };
    });
}

/**
 * The message signed by dkimpy (relaxed/relaxed): rsa-sha256 with a PEM RSA key file, or
 * ed25519-sha256 with a file holding the base64 seed (TestKey.seed).
 */
export async function dkimpySign(
  message: Buffer | string,
  selector: string,
  domain: string,
  keyFile: string,
  algorithm: 'rsa' | 'ed25519' = 'rsa',
): Promise<Buffer> {
  const r = await runTool(PYTHON, [DKIMPY, 'sign', selector, domain, keyFile, algorithm], { input: message });
  if (r.code !== 0) throw new Error(`dkimpy sign failed (${r.code}): ${r.stderr}`);
  return Buffer.from(r.stdout, 'latin1');
}

/** opendkim's verdict (from the Authentication-Results it would add) on every signature of `file`. */
export async function opendkimVerify(file: string, dns: TestDnsServer): Promise<Verdict[]> {
  const conf = join(dns.dir, 'opendkim-verify.conf');
  writeFileSync(conf, `Mode v\nSyslog no\nResolverConfiguration ${dns.libunboundConfig()}\n`);
  const r = await runTool(hasTool('opendkim') ? 'opendkim' : OPENDKIM, ['-x', conf, '-vv', '-t', file]);
  if (r.code !== 0) throw new Error(`opendkim -t failed (${r.code}): ${r.stderr}${r.stdout}`);
  const out: Verdict[] = [];
  // Comments such as "(2048-bit key; unprotected)" hold semicolons: drop them first.
  const text = r.stdout.replace(/\([^)]*\)/g, '');
  for (const m of text.matchAll(/dkim=(\w+)[^;]*?header\.d=(\S+)[^;]*?header\.s=([^\s;']+)/g))
    out.push({ result: m[1] as string, domain: m[2] as string, selector: m[3] as string });
  return out;
}

/** The first DKIM-Signature field of `message`, unfolded ("" if none). */
export function firstSignature(message: Buffer | string): string {
  const text = typeof message === 'string' ? message : message.toString('latin1');
  return (/^DKIM-Signature:[\s\S]*?(?=\r\n\S)/m.exec(text)?.[0] ?? '').replace(/\r\n\s+/g, ' ');
}

/** The h= list of the first DKIM-Signature of `message`, lower-cased, in order. */
export function signedFields(message: Buffer | string): string[] {
  const h = /h=([^;]*)/.exec(firstSignature(message))?.[1];
  return h?.split(':').map((x) => x.trim().toLowerCase()) ?? [];
}

export interface TestKey {
  /** PEM (PKCS#8) private key. */
  pem: string;
  /** Ed25519 only: the base64 32-byte private seed (dkimpy's key format). */
  seed?: string;
  /** TXT record text for <selector>._domainkey.<domain>. */
  record: string;
}

export function rsaKey(bits = 2048): TestKey {
  const k = generateKeyPairSync('rsa', { modulusLength: bits });
  const p = k.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  return {
    pem: k.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    record: `v=DKIM1; k=rsa; p=${p}`,
  };
}

export function ed25519Key(): TestKey {
  const k = generateKeyPairSync('ed25519');
  const p = k.publicKey.export({ type: 'spki', format: 'der' }).subarray(-32).toString('base64');
  return {
    pem: k.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    seed: k.privateKey.export({ type: 'pkcs8', format: 'der' }).subarray(-32).toString('base64'),
    record: `v=DKIM1; k=ed25519; p=${p}`,
  };
}
