// The ids of a system account that a Debian package created (_rspamd, opendkim, dovecot...),
// for test helpers that run such a daemon as root and must hand it its own files.
// Fails: throws when the account does not exist.
import { readFileSync } from 'node:fs';

export function systemUser(name: string): { uid: number; gid: number } {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`no system user ${name}`);
}
