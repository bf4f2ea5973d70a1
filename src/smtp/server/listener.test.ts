import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { generate } from 'selfsigned';
import type { Connection } from './connection.js';
import type { ReceivedMessage, ServerHooks } from './hooks.js';
import { type ListenerOptions, SmtpListener } from './listener.js';
import { chunksOf } from './message-data.js';
import { waitFor } from '../../../test/support/wait.js';

/** Reads CRLF lines from a socket; `next(n)` resolves with the next n complete replies. */
class ReplyReader {
  private buf = '';
  private replies: string[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  constructor(sock: net.Socket | tls.TLSSocket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i = this.buf.indexOf('\r\n');
      let cur = '';
      while (i !== -1) {
        const line = this.buf.slice(0, i + 2);
        this.buf = this.buf.slice(i + 2);
        cur += line;
        if (line[3] === ' ') {
          this.replies.push(cur);
          cur = '';
        }
        i = this.buf.indexOf('\r\n');
      }
      if (cur) this.buf = cur + this.buf;
      for (const w of this.waiters.splice(0)) w();
    });
    sock.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }
  async next(n = 1): Promise<string[]> {
    while (this.replies.length < n && !this.closed) await new Promise<void>((r) => this.waiters.push(r));
    return this.replies.splice(0, n);
  }
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

const codeOf = (r: string | undefined) => (r ?? '').split('\r\n').at(-2)?.slice(0, 3) ?? '';

function hooks(accepted: ReceivedMessage[]): ServerHooks {
  let n = 0;
  return {
    newMessageId: () => `Q${++n}`,
    accept: async (m) => {
      accepted.push(m);
      return { queueId: m.id };
    },
  };
}

async function start(extra: Partial<ListenerOptions> = {}) {
  const accepted: ReceivedMessage[] = [];
  const l = new SmtpListener({ hostname: 'mx.test', ...extra }, hooks(accepted));
  const addr = await l.listen(0, '127.0.0.1');
  return { l, port: addr.port, accepted };
}

let pems: { private: string; cert: string };

before(async () => {
  pems = await generate([{ name: 'commonName', value: 'mx.test' }], { keySize: 2048, algorithm: 'sha256' });
});

describe('SmtpListener over TCP', () => {
  const listeners: SmtpListener[] = [];
  after(async () => {
    for (const l of listeners) await l.stop(10);
  });

  test('a pipelined group written at once is answered in one write and the message accepted', async () => {
    const { l, port, accepted } = await start();
    listeners.push(l);
    const c = await connect(port);
    const r = new ReplyReader(c);
    assert.equal(codeOf((await r.next())[0]), '220');
    c.write('EHLO client\r\n');
    await r.next();
    const conn = [...l.connections][0] as Connection;
    const writes: string[] = [];
    const orig = conn.write.bind(conn);
    conn.write = (d: string) => {
      writes.push(d);
      return orig(d);
    };
    c.write('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nRCPT TO:<g@e.f>\r\nDATA\r\n');
    const rs = await r.next(4);
    assert.deepEqual(rs.map(codeOf), ['250', '250', '250', '354']);
    assert.equal(writes.length, 1);
    c.write('Subject: t\r\n\r\nhi\r\n.\r\nQUIT\r\n');
    assert.deepEqual((await r.next(2)).map(codeOf), ['250', '221']);
    assert.equal(accepted.length, 1);
    assert.equal(Buffer.concat(chunksOf(accepted[0]?.data).slice(1)).toString(), 'Subject: t\r\n\r\nhi\r\n');
    await waitFor(() => r.closed);
    await waitFor(() => l.connections.size === 0);
  });

  test('STARTTLS upgrades the same socket and drops pipelined plaintext', async () => {
    const { l, port, accepted } = await start({ tls: { key: pems.private, cert: pems.cert } });
    listeners.push(l);
    const c = await connect(port);
    const r = new ReplyReader(c);
    await r.next();
    c.write('EHLO client\r\n');
    assert.match((await r.next())[0] ?? '', /250[- ]STARTTLS\r\n/);
    c.write('STARTTLS\r\nMAIL FROM:<injected@x.y>\r\n');
    assert.equal(codeOf((await r.next())[0]), '220');
    c.removeAllListeners('data');
    const t = tls.connect({ socket: c, rejectUnauthorized: false, servername: 'mx.test' });
    await new Promise<void>((res, rej) => {
      t.once('secureConnect', () => res());
      t.once('error', rej);
    });
    const tr = new ReplyReader(t);
    t.write('EHLO client\r\n');
    const ehlo = (await tr.next())[0] ?? '';
    assert.doesNotMatch(ehlo, /STARTTLS/);
    // The injected MAIL was dropped: a nested-MAIL 503 would show it had been executed.
    t.write('MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n');
    assert.deepEqual((await tr.next(3)).map(codeOf), ['250', '250', '354']);
    t.write('x\r\n.\r\nQUIT\r\n');
    assert.deepEqual((await tr.next(2)).map(codeOf), ['250', '221']);
    const m = accepted[0];
    assert.equal(m?.sender, 'a@b.c');
    assert.match(m?.client.tls?.protocol ?? '', /^TLSv1\.[23]$/);
    assert.match(
      chunksOf(m?.data)[0]?.toString() ?? '',
      /\(using TLSv1\.[23] with cipher .+\)\r\n.*with ESMTPS id/s,
    );
    t.destroy();
  });

  test('beyond maxConnections a client gets 421 4.7.0 and is closed', async () => {
    const { l, port } = await start({ maxConnections: 1 });
    listeners.push(l);
    const a = await connect(port);
    const ra = new ReplyReader(a);
    assert.equal(codeOf((await ra.next())[0]), '220');
    const b = await connect(port);
    const rb = new ReplyReader(b);
    const refused = (await rb.next())[0] ?? '';
    assert.match(refused, /^421 4\.7\.0 mx\.test Too many connections\r\n$/);
    await waitFor(() => rb.closed);
    a.destroy();
    b.destroy();
  });

  test('per-IP limit refuses the extra connection from the same address', async () => {
    const { l, port } = await start({ maxPerIp: 2 });
    listeners.push(l);
    const socks = [await connect(port), await connect(port), await connect(port)];
    const readers = socks.map((s) => new ReplyReader(s));
    const first = await Promise.all(readers.map((r) => r.next()));
    assert.deepEqual(first.map((x) => codeOf(x[0])).sort(), ['220', '220', '421']);
    for (const s of socks) s.destroy();
  });

  test('a connection rate answered later (a cluster): the slot is held meanwhile, then 220 or 421', async () => {
    const answers: Array<(ok: boolean) => void> = [];
    const { l, port } = await start({
      maxPerIp: 2,
      clientRates: { allow: () => new Promise<boolean>((r) => answers.push(r)) },
    });
    listeners.push(l);
    const a = await connect(port);
    const ra = new ReplyReader(a);
    const b = await connect(port);
    const rb = new ReplyReader(b);
    await waitFor(() => answers.length === 2);
    // Both wait for their answer and count: a third from the address is refused at once.
    const c = await connect(port);
    const rc = new ReplyReader(c);
    assert.match((await rc.next())[0] ?? '', /^421 4\.7\.0 mx\.test Too many connections from /);
    assert.equal(answers.length, 2, 'refused before its rate was asked');
    answers[0]!(true);
    answers[1]!(false);
    assert.equal(codeOf((await ra.next())[0]), '220');
    assert.match(
      (await rb.next())[0] ?? '',
      /^421 4\.7\.0 mx\.test Error: too many connections from 127\.0\.0\.1\r\n$/,
    );
    await waitFor(() => rb.closed);
    // Clients gone before their answer leave nothing behind: one that reset its connection (the
    // socket here is destroyed meanwhile), one that closed it (seen once it is read).
    let served: net.Socket | undefined;
    l.server.once('connection', (s: net.Socket) => (served = s));
    const d = await connect(port);
    await waitFor(() => answers.length === 3);
    d.resetAndDestroy();
    await waitFor(() => served?.destroyed === true);
    answers[2]!(true);
    let closed = false;
    l.server.once('connection', (s: net.Socket) => s.once('close', () => (closed = true)));
    const e = await connect(port);
    await waitFor(() => answers.length === 4);
    e.destroy();
    answers[3]!(true);
    // Nothing reads the socket before the answer: its close is seen after it was admitted.
    await waitFor(() => closed && l.connections.size === 1);
    for (const s of [a, b, c]) s.destroy();
  });

  test('a client flooding commands without reading makes the server pause reading (bounded memory)', async () => {
    const { l, port } = await start();
    listeners.push(l);
    const c = await connect(port);
    c.pause(); // never read our replies
    const conn = await (async () => {
      await waitFor(() => l.connections.size === 1);
      return [...l.connections][0] as Connection;
    })();
    const chunk = Buffer.from('NOOP\r\n'.repeat(10_000));
    let written = 0;
    // Keep writing (into the client's own buffers if need be) until the server has stopped reading.
    for (let i = 0; i < 2000 && (conn.session.isReading || written < 4 * 1024 * 1024); i++) {
      c.write(chunk);
      written += chunk.length;
      await new Promise((r) => setImmediate(r));
    }
    await waitFor(() => !conn.session.isReading);
    assert.ok(written > 4 * 1024 * 1024, `client wrote ${written} bytes`);
    assert.ok(conn.session.input.buffered < 1 << 20, `server input buffered ${conn.session.input.buffered}`);
    assert.ok(conn.socket.writableLength < 1 << 20, `server output buffered ${conn.socket.writableLength}`);
    assert.ok(conn.socket.readableLength < 1 << 20, `server socket readable ${conn.socket.readableLength}`);
    c.destroy();
  });

  test('idle connections are closed by the sweep with 421 4.4.2', async () => {
    const { l, port } = await start({ idleTimeoutMs: 100, sweepIntervalMs: 20 });
    listeners.push(l);
    const c = await connect(port);
    const r = new ReplyReader(c);
    await r.next();
    const [bye] = await r.next();
    assert.match(bye ?? '', /^421 4\.4\.2 /);
    await waitFor(() => r.closed);
  });

  test('stop() lets an in-flight transaction finish, then says 421 and closes', async () => {
    const { l, port, accepted } = await start();
    const c = await connect(port);
    const r = new ReplyReader(c);
    await r.next();
    c.write('EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n');
    await r.next(4);
    c.write('part one\r\n');
    await waitFor(() => [...l.connections][0]?.session.mode === 'data');
    const stopped = l.stop(5000);
    const late = await new Promise<string>((res) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', (e) => res((e as NodeJS.ErrnoException).code ?? 'error'));
      s.on('connect', () => res('connected'));
    });
    assert.equal(late, 'ECONNREFUSED');
    c.write('.\r\n');
    assert.deepEqual((await r.next(2)).map(codeOf), ['250', '421']);
    await stopped;
    assert.equal(accepted.length, 1);
    assert.equal(l.connections.size, 0);
  });

  test('detach hands over the socket and pending bytes without closing it', async () => {
    const { l, port } = await start();
    listeners.push(l);
    const c = await connect(port);
    const r = new ReplyReader(c);
    await r.next();
    await waitFor(() => l.connections.size === 1);
    const conn = [...l.connections][0] as Connection;
    const { socket, pendingBytes } = conn.detach();
    assert.equal(pendingBytes.length, 0);
    assert.equal(l.connections.size, 0);
    socket.write('220 reversed\r\n');
    assert.equal((await r.next())[0], '220 reversed\r\n');
    socket.destroy();
  });
});
