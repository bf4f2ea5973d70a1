// The control socket kept across a reload (AdminSocketServer on a ListenSockets path): a request
// the old server has read is answered by it even as it closes, and the connection, with the
// half line it had not read to the end, goes on to the next server; a request made while no
// server is attached waits for the next one; a kept socket is not taken for another daemon's.
import assert from 'node:assert/strict';
import { existsSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeTempDir } from '../../test/support/daemon.js';
import { captureLogger } from '../../test/support/log.js';
import { waitFor } from '../../test/support/wait.js';
import { ListenSockets } from '../util/listen-sockets.js';
import { AdminSocketServer, clearStale, type OpRunner } from './socket.js';

/** A raw client on the socket: the response lines it got so far. */
function client(path: string): Promise<{ sock: net.Socket; lines: () => string[] }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    let text = '';
    sock.setEncoding('utf8').on('data', (d: string) => (text += d));
    sock.once('error', reject);
    sock.once('connect', () => resolve({ sock, lines: () => text.split('\n').filter((l) => l !== '') }));
  });
}

const server = (path: string, sockets: ListenSockets, run: OpRunner) =>
  AdminSocketServer.listen({ path, run, logger: captureLogger(), maxLine: 1 << 20, sockets });

test('a reload: the request read is answered by the old server, the rest of the connection by the new one', async () => {
  const dir = makeTempDir('admin-socket-');
  const path = join(dir, 'data', 'admin.sock');
  const sockets = new ListenSockets();
  const clients: net.Socket[] = [];
  try {
    let release: () => void = () => {};
    let started = false;
    const slow = new Promise<void>((r) => (release = r));
    const old = await server(path, sockets, async (op) => {
      started = true;
      if (op === 'slow') await slow;
      return 'old';
    });
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const c = await client(path);
    // One whole request and half of the next, as a client's writes may arrive.
    c.sock.write('{"id":1,"op":"slow"}\n{"id":2,');
    clients.push(c.sock);
    await waitFor(() => started, 'the old server at work on the first request');
    const closing = old.close(5_000);
    release();
    await closing;
    // Our own socket, kept: not a stale one to clear, nor another daemon's.
    await clearStale(path, sockets);
    const waiting = await client(path);
    clients.push(waiting.sock);
    waiting.sock.write('{"id":3,"op":"status"}\n');
    c.sock.write('"op":"status"}\n');
    await server(path, sockets, async () => 'new');
    await waitFor(() => c.lines().length === 2 && waiting.lines().length === 1, 'three answers');
    assert.deepEqual(
      c.lines().map((l) => JSON.parse(l)),
      [
        { id: 1, ok: true, result: 'old' },
        { id: 2, ok: true, result: 'new' },
      ],
    );
    assert.deepEqual(JSON.parse(waiting.lines()[0]!), { id: 3, ok: true, result: 'new' });
  } finally {
    for (const c of clients) c.destroy();
    sockets.closeAll('');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a client waiting when the kept socket closes is told the daemon is stopping; the file goes', async () => {
  const dir = makeTempDir('admin-socket-');
  const path = join(dir, 'admin.sock');
  const sockets = new ListenSockets();
  const clients: net.Socket[] = [];
  try {
    const s = await server(path, sockets, async () => 'x');
    await s.close();
    const c = await client(path);
    clients.push(c.sock);
    c.sock.write('{"id":1,"op":"status"}\n');
    const kept = await sockets.openPath(path, { refusal: '' });
    await waitFor(() => kept.waiting === 1, 'the request waiting');
    sockets.closeUnattached('421 not for the control socket\r\n');
    await waitFor(() => c.lines().length === 1, 'the refusal');
    assert.deepEqual(JSON.parse(c.lines()[0]!), {
      id: 0,
      ok: false,
      error: { code: 'ADMIN_UNREACHABLE', kind: 'transient', message: 'the daemon is stopping' },
    });
    assert.equal(existsSync(path), false);
  } finally {
    for (const c of clients) c.destroy();
    sockets.closeAll('');
    rmSync(dir, { recursive: true, force: true });
  }
});
