// Value parsers shared by the section readers: domains, local parts, secrets given inline or
// in a file, and PEM files. Pure except for secret/PEM reading, which reads only the named
// file, synchronously, at load time (start-up), never later.
// Failure: domain/local-part parsers throw MtaError 'CONFIG_VALUE'; the file readers record a
// problem on the section and return undefined.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { normalizeDomain } from '../util/domain.js';
import type { Section } from './reader.js';
import { valueError } from './units.js';
import { isMailboxName } from '../util/local-part.js';

/** A domain name, lower-cased, without a trailing dot. */
export function parseDomain(s: string): string {
  const d = normalizeDomain(s);
  if (d === undefined) throw valueError('a domain name like "example.test"', s);
  return d;
}

/** A route domain: a domain or "*". */
export function parseRouteDomain(s: string): string {
  return s.trim() === '*' ? '*' : parseDomain(s);
}

/**
 * A local part that names a mailbox (util/local-part.ts, the rule RCPT and local delivery use),
 * so that "{user}" can never climb out of the mail directory and every listed user is reachable.
 */
export function parseLocalUser(s: string): string {
  if (!isMailboxName(s)) {
    throw valueError(
      'a local part that names a mailbox: a dot-atom without "/", "!" or "%", at most 64 characters',
      s,
    );
  }
  return s;
}

/** A user name for AUTH or ODMR: printable, no spaces, no control characters. */
export function parseUserName(s: string): string {
  if (!/^[\x21-\x7e\u0080-\uffff]{1,255}$/.test(s)) throw valueError('a user name without spaces', s);
  return s;
}

function readText(sec: Section, k: string, file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    sec.problem(k, `cannot read ${JSON.stringify(file)} (${code})`);
    return undefined;
  }
}

/**
 * A secret given as `valueKey = "..."` or `fileKey = "path"` (exactly one of them). A file's
 * trailing line break(s) are dropped. Relative file paths resolve against `baseDir`.
 */
export function readSecret(
  sec: Section,
  valueKey: string,
  fileKey: string,
  baseDir: string,
  required: boolean,
): string | undefined {
  const inline = sec.raw(valueKey);
  const fileRaw = sec.raw(fileKey);
  if (inline !== undefined && fileRaw !== undefined) {
    sec.problem(valueKey, `give either ${valueKey} or ${fileKey}, not both`);
    return undefined;
  }
  if (inline === undefined && fileRaw === undefined) {
    if (required) sec.problem(valueKey, `required (or ${fileKey})`);
    return undefined;
  }
  if (inline !== undefined) return sec.string(valueKey);
  const file = sec.string(fileKey);
  if (file === undefined) return undefined;
  const text = readText(sec, fileKey, resolve(baseDir, file));
  if (text === undefined) return undefined;
  const secret = text.replace(/[\r\n]+$/, '');
  if (secret === '') {
    sec.problem(fileKey, `${JSON.stringify(file)} is empty`);
    return undefined;
  }
  return secret;
}

/** Reads a PEM file named by key `k`; records a problem unless it holds a PEM block. */
export function readPem(
  sec: Section,
  k: string,
  baseDir: string,
): { file: string; text: string } | undefined {
  const name = sec.string(k);
  if (name === undefined) return undefined;
  const file = resolve(baseDir, name);
  const text = readText(sec, k, file);
  if (text === undefined) return undefined;
  if (!text.includes('-----BEGIN ')) {
    sec.problem(k, `${JSON.stringify(file)} holds no PEM block`);
    return undefined;
  }
  return { file, text };
}
