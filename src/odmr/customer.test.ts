// The ODMR customer against a scripted provider on a real socket: the client role up to ATRN,
// then the turnaround. A provider that speaks between its 250 to ATRN and our 220 ends the
// session (nothing of what it sent is taken as a reply or a command); a refused AUTH is a
// permanent error, so `logmta odmr` does not advise polling again with the same secret.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, test } from 'node:test';
import { MtaError } from '../errors.js';
import type { ServerHooks } from '../smtp/server/hooks.js';
import { collect } from './customer.js';

/** A provider that answers each command line from `script` (the greeting first). */
async function provider(script: (line: string) => string | undefined): Promise<net.Server> {
  const server = net.createServer((s) => {
    s.write('220 provider.test ESMTP\r\n');
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const reply = script(line);
        if (reply !== undefined) s.write(reply);
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return server;
}

const handshake = (line: string, atrn: string, auth = '235 2.7.0 ok\r\n'): string | undefined => {
  if (/^EHLO /i.test(line)) return '250-provider.test\r\n250 AUTH CRAM-MD5\r\n';
  if (line === 'AUTH CRAM-MD5') return `334 ${Buffer.from('<1.2@provider.test>').toString('base64')}\r\n`;
  if (line.startsWith('ATRN')) return atrn;
  if (line === 'QUIT') return '221 bye\r\n';
  return auth; // the CRAM-MD5 response
};

// collect() never calls the hooks in these tests: the session ends before any mail.
const hooks = {} as ServerHooks;
const servers: net.Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function poll(script: (line: string) => string | undefined): Promise<unknown> {
  const s = await provider(script);
  servers.push(s);
  const port = (s.address() as net.AddressInfo).port;
  return collect({
    host: '127.0.0.1',
    port,
    user: 'acme',
    password: 'secret',
    session: { hostname: 'customer.test' },
    hooks,
    timeoutMs: 10_000,
  });
}

describe('ODMR customer', () => {
  test('a provider that speaks between its 250 to ATRN and our 220 ends the session', async () => {
    await assert.rejects(
      poll((l) => handshake(l, '250 OK now reversing the connection\r\n220 rogue.test ESMTP\r\n')),
      (e: unknown) => e instanceof MtaError && e.code === 'ODMR_PROTOCOL',
    );
  });

  test('453 to ATRN is no mail, not an error', async () => {
    assert.deepEqual(await poll((l) => handshake(l, '453 4.2.0 You have no mail\r\n')), {
      status: 'no-mail',
      messages: 0,
    });
  });

  test('a refused AUTH is a permanent ODMR_AUTH error naming the reply', async () => {
    await assert.rejects(
      poll((l) => handshake(l, '250 OK\r\n', '535 5.7.8 bad secret\r\n')),
      (e: unknown) =>
        e instanceof MtaError && e.code === 'ODMR_AUTH' && e.kind === 'permanent' && /535/.test(e.message),
    );
  });
});
