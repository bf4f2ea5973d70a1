// Readers of the sections about DNS and mail authentication: [dns] (how every lookup is made),
// [[dkim]] (signing keys, read and checked here so a bad key stops start-up, not a message),
// [auth] (checks of incoming mail and their policy), [[dnsbl]] (blocklists).
// Same contract as sections.ts: defaults from defaults.ts, problems recorded on the reader
// (never thrown), the returned value incomplete only when a problem was recorded.

import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { DEFAULTS } from './defaults.js';
import { isHostName, parseCidr, parseHostPort } from './net.js';
import type { Section } from './reader.js';
import { isIPv4 } from 'node:net';
import type { AuthConfig, DkimKeyConfig, DnsblConfig, DnsConfig } from './schema.js';
import { parseDuration, valueError } from './units.js';
import { parseDomain, parseUserName } from './values.js';

export function readDns(sec: Section | undefined, empty: () => Section): DnsConfig {
  const d = DEFAULTS.dns;
  const s = sec ?? empty();
  const c: DnsConfig = {
    servers: s.listOf('servers', (v) => parseHostPort(v, { requireIp: true, defaultPort: d.port })) ?? [],
    timeoutMs: s.duration('timeout') ?? parseDuration(d.timeout),
    attempts: s.positiveInt('attempts') ?? d.attempts,
    cacheSize: s.nonNegativeInt('cache_size') ?? d.cacheSize,
    maxTtlMs: s.duration('max_ttl', { allowZero: true }) ?? parseDuration(d.maxTtl),
    maxNegativeTtlMs: s.duration('max_negative_ttl', { allowZero: true }) ?? parseDuration(d.maxNegativeTtl),
    dnssec:
      (s.string('dnssec', { oneOf: ['loopback', 'always', 'never'] }) as DnsConfig['dnssec'] | undefined) ??
      d.dnssec,
  };
  s.finish();
  return c;
}

/** A selector: one or more DNS labels (RFC 6376 3.1), e.g. "s1" or "2026.mail". */
function parseSelector(s: string): string {
  const v = s.trim().toLowerCase();
  if (!isHostName(v) || v.startsWith('_')) throw valueError('a selector of DNS labels like "s1"', s);
  return v;
}

/** The key's algorithm and DNS record, or a problem. RSA keys need 1024 bits at least (RFC 8301). */
function loadKey(s: Section, file: string): Pick<DkimKeyConfig, 'key' | 'algorithm' | 'record'> | undefined {
  let text: Buffer;
  try {
    text = readFileSync(file);
  } catch (e) {
    s.problem(
      'key_file',
      `cannot read ${JSON.stringify(file)} (${(e as NodeJS.ErrnoException).code ?? 'error'})`,
    );
    return undefined;
  }
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey({ key: text, format: 'pem' });
  } catch (e) {
    s.problem(
      'key_file',
      `${JSON.stringify(file)} holds no private key in PEM form (${(e as Error).message})`,
    );
    return undefined;
  }
  const pub = createPublicKey(key);
  if (key.asymmetricKeyType === 'rsa') {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 1024) {
      s.problem(
        'key_file',
        `an RSA key of ${bits} bits is too short to sign with (at least 1024, 2048 recommended)`,
      );
      return undefined;
    }
    const p = pub.export({ type: 'spki', format: 'der' }).toString('base64');
    return { key, algorithm: 'rsa-sha256', record: `v=DKIM1; k=rsa; p=${p}` };
  }
  if (key.asymmetricKeyType === 'ed25519') {
    // RFC 8463 3.2: the record holds the bare 32-byte public key, not its SPKI wrapping.
    const p = pub.export({ type: 'spki', format: 'der' }).subarray(-32).toString('base64');
    return { key, algorithm: 'ed25519-sha256', record: `v=DKIM1; k=ed25519; p=${p}` };
  }
  s.problem('key_file', `a ${key.asymmetricKeyType} key cannot sign DKIM (RSA or Ed25519)`);
  return undefined;
}

export function readDkim(list: Section[] | undefined, baseDir: string): DkimKeyConfig[] {
  const seen = new Map<string, string>();
  return (list ?? []).map((s) => {
    const domain = s.required('domain', parseDomain) ?? '';
    const selector = s.required('selector', parseSelector) ?? '';
    const subdomains = s.bool('subdomains') ?? false;
    const users = s.listOf('users', parseUserName, { nonEmpty: true });
    const networks = s.listOf('networks', parseCidr, { nonEmpty: true });
    const name = s.required('key_file', (f) => resolve(baseDir, f));
    const loaded = name === undefined ? undefined : loadKey(s, name);
    const id = `${selector}._domainkey.${domain}`;
    if (domain !== '' && selector !== '') {
      const prev = seen.get(id);
      if (prev !== undefined)
        s.problem('selector', `${JSON.stringify(selector)} of ${domain} is already used by ${prev}`);
      else seen.set(id, s.path);
    }
    s.finish();
    return {
      domain,
      selector,
      subdomains,
      users,
      networks,
      keyFile: name ?? '',
      key: loaded?.key ?? (undefined as never),
      algorithm: loaded?.algorithm ?? 'rsa-sha256',
      record: loaded?.record ?? '',
    };
  });
}

/** [auth]; the authserv-id defaults to the host name (the resolved one when the file has none). */
export function readAuth(
  sec: Section | undefined,
  empty: () => Section,
  hostname: string | undefined,
): AuthConfig {
  const d = DEFAULTS.auth;
  const s = sec ?? empty();
  const id = s.map('authserv_id', (v) => {
    if (!isHostName(v) || v.startsWith('_')) throw valueError('a host name like "mx.example.org"', v);
    return v.replace(/\.$/, '').toLowerCase();
  });
  const c: AuthConfig = {
    checks: s.bool('checks') ?? d.checks,
    authservId: id ?? (hostname ?? DEFAULTS.hostname()).toLowerCase(),
    dmarcReject: s.bool('dmarc_reject') ?? d.dmarcReject,
    tempfailOnDnsError: s.bool('tempfail_on_dns_error') ?? d.tempfailOnDnsError,
    timeoutMs: s.duration('timeout') ?? parseDuration(d.timeout),
  };
  s.finish();
  return c;
}

export function readDnsbl(list: Section[] | undefined): DnsblConfig[] {
  return (list ?? []).map((s) => {
    const zone = s.required('zone', parseDomain) ?? '';
    const at = (s.string('at', { oneOf: ['connect', 'rcpt'] }) as DnsblConfig['at'] | undefined) ?? 'rcpt';
    const match = s.listOf(
      'match',
      (v) => {
        if (!isIPv4(v.trim()) || !v.trim().startsWith('127.'))
          throw valueError('an answer address in 127.0.0.0/8 like "127.0.0.2"', v);
        return v.trim();
      },
      { nonEmpty: true },
    );
    s.finish();
    return { zone, at, match };
  });
}
