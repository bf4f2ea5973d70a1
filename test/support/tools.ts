// The one place tests ask whether an external program is there (swaks, fetchmail, postfix,
// chromium, testssl.sh, ...): a test that needs a missing one skips with the reason, so the
// suite passes on a machine with none of them, and runs everything where they are installed.
// Hiding: LOGMTA_TEST_HIDE_TOOLS="swaks,postfix" (names or absolute paths; "all" = every tool
// but the base ones npm and tar) makes hasTool answer false for them, as on a machine without
// them; scripts/test-without-tools.mjs also takes them off PATH and runs the whole suite.
// Invariant: answers are cached per process; an absolute path is checked as given.
// Fails: never throws (an unreadable PATH entry is simply not a place the tool is).

import { accessSync, constants, statSync } from 'node:fs';
import { basename, isAbsolute, join } from 'node:path';

/**
 * Optional programs some tests drive, by the name they are looked up with. The list
 * scripts/test-without-tools.mjs takes off PATH (add a tool here when a test starts using one).
 */
export const OPTIONAL_TOOLS: readonly string[] = [
  'swaks',
  'fetchmail',
  'postfix',
  'postconf',
  'smtp-source',
  'sendmail',
  'chromium',
  'python3',
  'python',
  'testssl.sh',
  'testssl',
  'openssl',
  'unbound',
  'nsd',
  'ldns-keygen',
  'ldns-signzone',
  'dnsmasq',
  'opendkim',
  'rspamd',
  'dovecot',
  'doveadm',
  'fusermount3',
  'redis-server',
];

/** Never hidden by "all": the suite itself needs them. */
const BASE = new Set(['npm', 'tar', 'node']);

function hidden(name: string): boolean {
  // Compared by program name: hiding "postfix" hides "/usr/sbin/postfix" and the other way round.
  const list = (process.env.LOGMTA_TEST_HIDE_TOOLS ?? '')
    .split(',')
    .map((s) => basename(s.trim()))
    .filter((s) => s !== '');
  const base = basename(name);
  if (list.includes('all') && !BASE.has(base)) return true;
  return list.includes(base);
}

function executable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const cache = new Map<string, string | undefined>();

/** The path of an executable (a name looked up on PATH, or an absolute path), or undefined. */
export function toolPath(name: string): string | undefined {
  if (cache.has(name)) return cache.get(name);
  let found: string | undefined;
  if (!hidden(name)) {
    if (isAbsolute(name)) found = executable(name) ? name : undefined;
    else
      found = (process.env.PATH ?? '')
        .split(':')
        .filter((d) => d !== '')
        .map((d) => join(d, name))
        .find(executable);
  }
  cache.set(name, found);
  return found;
}

/** Whether an executable is there (and not hidden), for `{ skip: 'swaks is not installed' }`. */
export function hasTool(name: string): boolean {
  return toolPath(name) !== undefined;
}

/** The skip reason for a test that needs all of `names`, or false when they are all there. */
export function needTools(...names: string[]): string | false {
  const missing = names.filter((n) => !hasTool(n));
  return missing.length === 0
    ? false
    : `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed`;
}
