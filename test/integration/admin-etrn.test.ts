// `logmta etrn` against a scripted ETRN server: EHLO first, one ETRN per domain in order (not
// stopping at a 251 the way fetchmail does), every reply printed, QUIT, and the exit code of
// the worst reply (0 all 2xx, 75 some 4xx or no server, 69 some 5xx).
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { LOGMTA_BIN, runTool } from '../support/daemon.js';

const REPLIES: Record<string, string> = {
  'ETRN example.org': '250 OK, queuing for node example.org started',
  'ETRN @example.net': '251 OK, no messages waiting for node example.net',
  'ETRN busy.example': '458 Unable to queue messages for node busy.example',
  'ETRN denied.example': '459 Node denied.example not allowed: unknown',
  'ETRN bad': '501 Syntax Error in Parameters',
};

describe('logmta etrn', () => {
  let server: net.Server;
  let port = 0;
  const sessions: string[][] = [];

  before(async () => {
    server = net.createServer((sock) => {
      const seen: string[] = [];
      sessions.push(seen);
      let buf = '';
      sock.write('220 etrn.test ESMTP\r\n');
      sock.setEncoding('utf8');
      sock.on('data', (c: string) => {
        buf += c;
        let i = buf.indexOf('\r\n');
        while (i >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 2);
          seen.push(line);
          if (/^EHLO /i.test(line)) sock.write('250-etrn.test\r\n250-PIPELINING\r\n250 ETRN\r\n');
          else if (line === 'QUIT') sock.end('221 bye\r\n');
          else sock.write(`${REPLIES[line] ?? '500 what?'}\r\n`);
          i = buf.indexOf('\r\n');
        }
      });
      sock.on('error', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });

  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  const etrn = (args: string[]) => runTool(process.execPath, [LOGMTA_BIN, 'etrn', ...args]);

  test('sends EHLO, one ETRN per domain and QUIT, prints the replies, exits 0 on 2xx', async () => {
    const r = await etrn(['--name', 'client.test', `127.0.0.1:${port}`, 'example.org', '@example.net']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      '250 OK, queuing for node example.org started\n251 OK, no messages waiting for node example.net\n',
    );
    assert.deepEqual(sessions.at(-1), ['EHLO client.test', 'ETRN example.org', 'ETRN @example.net', 'QUIT']);
  });

  test('goes on after a 251 and a 458, and exits 75 for the 4xx', async () => {
    const r = await etrn([`127.0.0.1:${port}`, '@example.net', 'busy.example', 'example.org']);
    assert.equal(r.code, 75);
    assert.equal(r.stdout.split('\n').filter(Boolean).length, 3);
    assert.match(r.stdout, /^458 Unable to queue messages for node busy\.example$/m);
    assert.deepEqual(sessions.at(-1)?.slice(1), [
      'ETRN @example.net',
      'ETRN busy.example',
      'ETRN example.org',
      'QUIT',
    ]);
  });

  test('a 5xx reply exits 69, even after a 4xx (459 is a 4xx)', async () => {
    const r = await etrn([`127.0.0.1:${port}`, 'denied.example', 'bad']);
    assert.equal(r.code, 69);
    assert.match(
      r.stdout,
      /^459 Node denied\.example not allowed: unknown\n501 Syntax Error in Parameters\n$/,
    );
  });

  test('no server listening exits 75; bad arguments exit 64', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const p = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const r = await etrn([`127.0.0.1:${p}`, 'example.org']);
    assert.equal(r.code, 75);
    assert.match(r.stderr, /ECONNREFUSED|connect/);
    assert.equal((await etrn([`127.0.0.1:${port}`])).code, 64);
    assert.equal((await etrn(['not a host!', 'x.org'])).code, 64);
    assert.equal((await etrn([`127.0.0.1:${port}`, 'two words'])).code, 64);
  });
});
