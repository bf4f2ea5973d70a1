// The client in LMTP mode (RFC 2033) against a scripted loopback server: LHLO, pipelined
// envelope, one reply per accepted recipient after the data — and what happens when the server
// goes away between those replies or refuses LHLO. (The real Dovecot is in test/interop.)
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { SmtpClient } from './session.js';
import { makeTx } from '../../../test/support/client.js';

interface Script {
  /** Replies to LHLO (default 250 with PIPELINING). */
  lhlo?: string;
  /** Per-recipient replies after the data, in RCPT order; "CLOSE" drops the connection there. */
  after: string[];
  /** RCPT replies by address (default 250). */
  rcpt?: Record<string, string>;
  /**
   * Replies to MAIL and RCPT are held back until DATA has arrived (then all are sent, with
   * the 354): only a client that pipelines (RFC 2920) gets past MAIL.
   */
  holdUntilData?: boolean;
}

/** The client under test, in LMTP mode without TLS, connected to the scripted server. */
const connectLmtp = (port: number) =>
  SmtpClient.connect('127.0.0.1', port, { name: 'mx.test', lmtp: true, tls: { mode: 'none' } });

async function lmtpServer(
  script: Script,
): Promise<{ port: number; lines: string[]; close(): Promise<void> }> {
  const lines: string[] = [];
  const server = net.createServer((s) => {
    let buf = '';
    let inData = false;
    let held: string[] = [];
    const reply = (r: string) => {
      if (script.holdUntilData) held.push(r);
      else s.write(r);
    };
    s.write('220 lmtp.test LMTP ready\r\n');
    s.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const i = buf.indexOf('\r\n');
        if (i < 0) return;
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) {
          if (line !== '.') continue;
          inData = false;
          for (const r of script.after) {
            if (r === 'CLOSE') {
              s.destroy();
              return;
            }
            s.write(`${r}\r\n`);
          }
          continue;
        }
        lines.push(line);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'LHLO')
          s.write(script.lhlo ?? '250-lmtp.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n');
        else if (verb === 'EHLO' || verb === 'HELO') s.write('500 5.5.1 this is LMTP\r\n');
        else if (verb === 'MAIL') reply('250 2.1.0 OK\r\n');
        else if (verb === 'RCPT') {
          const a = /<([^>]*)>/.exec(line)?.[1] ?? '';
          reply(`${script.rcpt?.[a] ?? '250 2.1.5 OK'}\r\n`);
        } else if (verb === 'DATA') {
          inData = true;
          s.write(`${held.join('')}354 go ahead\r\n`);
          held = [];
        } else if (verb === 'QUIT') s.end('221 2.0.0 bye\r\n');
        else s.write('250 2.0.0 OK\r\n');
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    lines,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

describe('SmtpClient in LMTP mode', () => {
  test('greets with LHLO and maps each per-recipient reply after DATA to that recipient', async () => {
    const srv = await lmtpServer({
      after: [
        '250 2.0.0 <a@box.test> saved',
        '552 5.2.2 <b@box.test> quota exceeded',
        '452 4.2.2 <c@box.test> full',
      ],
      rcpt: { 'x@box.test': '550 5.1.1 <x@box.test> no such user' },
    });
    const c = await connectLmtp(srv.port);
    const res = await c.sendMessage(makeTx(['a@box.test', 'x@box.test', 'b@box.test', 'c@box.test']));
    assert.deepEqual(
      res.recipients.map((r) => `${r.status} ${r.code} ${r.enhanced} ${r.stage}`),
      [
        'delivered 250 2.0.0 data',
        'failed 550 5.1.1 rcpt',
        'failed 552 5.2.2 data',
        'deferred 452 4.2.2 data',
      ],
    );
    assert.equal(res.reusable, true, 'the connection can carry the next message');
    assert.equal(srv.lines[0], 'LHLO mx.test');
    await c.quit();
    await srv.close();
  });

  test('the envelope is pipelined: MAIL, RCPTs and DATA go before any reply is read', {
    timeout: 10_000,
  }, async () => {
    const srv = await lmtpServer({
      holdUntilData: true,
      after: ['250 2.0.0 <a@box.test> saved', '250 2.0.0 <b@box.test> saved'],
    });
    const c = await connectLmtp(srv.port);
    const res = await c.sendMessage(makeTx(['a@box.test', 'b@box.test']));
    assert.deepEqual(
      res.recipients.map((r) => r.status),
      ['delivered', 'delivered'],
    );
    assert.deepEqual(
      srv.lines.slice(1).map((l) => l.slice(0, 4)),
      ['MAIL', 'RCPT', 'RCPT', 'DATA'],
    );
    await c.quit();
    await srv.close();
  });

  test('the server going away between per-recipient replies defers only the unanswered ones', async () => {
    const srv = await lmtpServer({ after: ['250 2.0.0 <a@box.test> saved', 'CLOSE'] });
    const c = await connectLmtp(srv.port);
    const res = await c.sendMessage(makeTx(['a@box.test', 'b@box.test']));
    assert.deepEqual(
      res.recipients.map((r) => r.status),
      ['delivered', 'deferred'],
    );
    assert.equal(res.reusable, false);
    c.close();
    await srv.close();
  });

  test('a refused LHLO fails the handshake; there is no HELO fallback', async () => {
    const srv = await lmtpServer({ lhlo: '500 5.5.1 no\r\n', after: [] });
    await assert.rejects(connectLmtp(srv.port), /refused LHLO/);
    assert.ok(!srv.lines.some((l) => l.startsWith('HELO')));
    await srv.close();
  });
});
