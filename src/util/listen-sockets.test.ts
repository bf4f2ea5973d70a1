import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import { ListenSockets } from './listen-sockets.js';

function connect(port: number): Promise<{ sock: net.Socket; text: () => string; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    sock.setEncoding('latin1').on('data', (d: string) => (got += d));
    const closed = new Promise<void>((r) => sock.once('close', () => r()));
    sock.once('error', reject);
    sock.once('connect', () => resolve({ sock, text: () => got, closed }));
  });
}

test('a connection made while no listener is attached waits and goes to the next one', async () => {
  const sockets = new ListenSockets();
  const first = await sockets.open('127.0.0.1', 0);
  first.attach((s) => s.end('first\r\n'));
  first.detach();
  const c = await connect(first.address.port);
  while (first.waiting === 0) await new Promise((r) => setTimeout(r, 2));
  const again = await sockets.open('127.0.0.1', 0);
  assert.equal(again, first, 'the same socket, so the same port');
  again.attach((s) => s.end('second\r\n'));
  await c.closed;
  assert.equal(c.text(), 'second\r\n');
  sockets.closeAll('421 bye\r\n');
});

test('closing refuses the waiting connections with the given line; port 0 twice is two sockets', async () => {
  const sockets = new ListenSockets();
  const a = await sockets.open('127.0.0.1', 0);
  a.attach(() => {});
  const b = await sockets.open('127.0.0.1', 0);
  assert.notEqual(a.address.port, b.address.port);
  const bPort = b.address.port;
  const c = await connect(bPort);
  while (b.waiting === 0) await new Promise((r) => setTimeout(r, 2));
  sockets.closeUnattached('421 4.3.2 mx.test Service shutting down\r\n');
  await c.closed;
  assert.equal(c.text(), '421 4.3.2 mx.test Service shutting down\r\n');
  await assert.rejects(connect(bPort), /ECONNREFUSED/);
  const d = await connect(a.address.port);
  d.sock.destroy();
  sockets.closeAll('');
});

test('a UNIX path is kept like a port: opened again it is the same socket; closing removes the file', async () => {
  const { mkdtempSync, existsSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'listen-sockets-'));
  const path = join(dir, 'ctl.sock');
  const sockets = new ListenSockets();
  let prepared = 0;
  const o = { refusal: 'bye\n', prepare: async () => void prepared++ };
  const first = await sockets.openPath(path, o);
  assert.ok(sockets.holdsPath(path));
  first.attach((s) => s.end('first\n'));
  await assert.rejects(sockets.openPath(path, o), /EADDRINUSE/, 'one listener per path');
  first.detach();
  assert.equal(await sockets.openPath(path, o), first);
  assert.equal(prepared, 1, 'a kept socket is not prepared (cleared) again');
  // A connection a listener took and gives back waits for the next one.
  const c = net.connect(path);
  let got = '';
  c.setEncoding('latin1').on('data', (d: string) => (got += d));
  const closed = new Promise<void>((r) => c.once('close', () => r()));
  first.attach((s) => {
    first.detach();
    first.giveBack(s);
  });
  while (first.waiting === 0) await new Promise((r) => setTimeout(r, 2));
  sockets.closeUnattached('421 not this\r\n');
  await closed;
  assert.equal(got, 'bye\n', "the path's own refusal");
  assert.equal(existsSync(path), false);
  assert.equal(sockets.holdsPath(path), false);
  rmSync(dir, { recursive: true, force: true });
});

test('release closes only the unattached sockets of that host:port; a waiting UNIX connection stays', async () => {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'listen-sockets-'));
  const path = join(dir, 'ctl.sock');
  const sockets = new ListenSockets();
  const tcp = await sockets.open('127.0.0.1', 0);
  const port = tcp.address.port;
  const ctl = await sockets.openPath(path, { refusal: 'bye\n' });
  // Between two daemons: nothing attached; a control client waits.
  const c = net.connect(path);
  let got = '';
  c.setEncoding('latin1').on('data', (d: string) => (got += d));
  while (ctl.waiting === 0) await new Promise((r) => setTimeout(r, 2));
  // (Sockets are kept under the address configured: port 0 here.)
  sockets.release('127.0.0.1', 0, '421 moved\r\n');
  await assert.rejects(connect(port), /ECONNREFUSED/, 'the port is free for another thread');
  assert.equal(ctl.waiting, 1, 'the control client still waits');
  assert.ok(sockets.holdsPath(path));
  ctl.attach((s) => s.end('answered\n'));
  await new Promise<void>((r) => c.once('close', () => r()));
  assert.equal(got, 'answered\n');
  sockets.closeAll('');
  rmSync(dir, { recursive: true, force: true });
});
