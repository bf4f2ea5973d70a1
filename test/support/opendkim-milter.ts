// A real opendkim (Debian's package) running as a milter for tests: on 127.0.0.1 at a free port
// (inet:), or on a unix socket in its directory (unix: true), signing for one domain and
// verifying everything else, asking the tests' DNS server (dns-server.ts) for public keys.
// Loopback is deliberately not an internal host: opendkim signs only what an authenticated
// client submits ({auth_authen}) and verifies the rest.
// Invariant: stop() ends the process and removes its directory.
// Fails: start rejects with opendkim's output when it does not listen within 15 s.
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { makeTempDir } from './daemon.js';
import { OPENDKIM } from './dkim-tools.js';
import type { TestDnsServer } from './dns-server.js';
import { freeTcpPort } from './ports.js';

export interface OpendkimMilter {
  address: string;
  port: number;
  stop(): Promise<void>;
  output(): string;
}

const listening = (where: number | string): Promise<boolean> =>
  new Promise((res) => {
    const s = (typeof where === 'number' ? connect(where, '127.0.0.1') : connect(where)).once(
      'connect',
      () => {
        s.destroy();
        res(true);
      },
    );
    s.once('error', () => res(false));
  });

export async function startOpendkimMilter(o: {
  domain: string;
  selector: string;
  keyPem: string;
  dns: TestDnsServer;
  authservId: string;
  /** Listen on a unix socket (address "unix:/path") instead of TCP. */
  unix?: boolean;
}): Promise<OpendkimMilter> {
  const dir = makeTempDir('logmta-opendkim-');
  const key = join(dir, 'key.pem');
  writeFileSync(key, o.keyPem, { mode: 0o600 });
  for (let attempt = 0; ; attempt++) {
    const port = o.unix ? 0 : await freeTcpPort();
    const path = join(dir, 'milter.sock');
    const where = o.unix ? path : port;
    writeFileSync(
      join(dir, 'opendkim.conf'),
      [
        'Syslog no',
        'Background no',
        'Mode sv',
        `Domain ${o.domain}`,
        `Selector ${o.selector}`,
        `KeyFile ${key}`,
        o.unix ? `Socket local:${path}` : `Socket inet:${port}@127.0.0.1`,
        'InternalHosts 192.0.2.254',
        'RequireSafeKeys no',
        `AuthservID ${o.authservId}`,
        `ResolverConfiguration ${o.dns.libunboundConfig()}`,
        `PidFile ${join(dir, 'opendkim.pid')}`,
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn(OPENDKIM, ['-f', '-x', join(dir, 'opendkim.conf')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    let exited = false;
    child.once('exit', () => (exited = true));
    const end = Date.now() + 15_000;
    while (!exited && Date.now() < end && !(await listening(where)))
      await new Promise((r) => setTimeout(r, 50));
    if (!exited && (await listening(where))) {
      return {
        address: o.unix ? `unix:${path}` : `inet:127.0.0.1:${port}`,
        port,
        output: () => out,
        async stop() {
          if (!exited) {
            const gone = new Promise<void>((r) => child.once('exit', () => r()));
            child.kill('SIGTERM');
            await gone;
          }
          rmSync(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill('SIGKILL');
    // Another process may have taken the port between the probe and the bind: try another.
    if (attempt >= 4) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`opendkim did not start:\n${out}`);
    }
  }
}
