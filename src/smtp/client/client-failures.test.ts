// The client against peers that refuse, fail, stall, disconnect or misbehave: one test per
// failure mode, each checking the per-recipient classification and whether the connection survives.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { FakeClock } from '../../../test/support/clock.js';
import { waitFor } from '../../../test/support/wait.js';
import { SmtpClient } from './session.js';
import { makeTx, withSink } from '../../../test/support/client.js';

/** A hand-written peer: `onLine` answers each command line (return undefined for silence). */
async function rawPeer(
  greeting: string,
  onLine: (line: string, sock: net.Socket) => string | undefined,
): Promise<{ port: number; close: () => Promise<void>; closed: Promise<void> }> {
  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((r) => {
    resolveClosed = r;
  });
  const socks = new Set<net.Socket>();
  const server = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => {});
    s.on('close', () => {
      socks.delete(s);
      resolveClosed();
    });
    s.write(greeting);
    let acc = '';
    s.on('data', (d) => {
      acc += d.toString('latin1');
      let i = acc.indexOf('\r\n');
      while (i >= 0) {
        const out = onLine(acc.slice(0, i), s);
        acc = acc.slice(i + 2);
        if (out !== undefined) s.write(out);
        i = acc.indexOf('\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    closed,
    close: async () => {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('SmtpClient recipient and data failures', () => {
  test('a 5xx to one RCPT fails that recipient only', async () => {
    const rcptReply = (a: string) =>
      a === 'bad@x.test' ? '550 5.1.1 <bad@x.test>: no such user' : undefined;
    await withSink({ rcptReply }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['ok@x.test', 'bad@x.test']));
      assert.deepEqual(
        res.recipients.map((r) => [r.status, r.code, r.enhanced, r.stage]),
        [
          ['delivered', 250, '2.0.0', 'data'],
          ['failed', 550, '5.1.1', 'rcpt'],
        ],
      );
      assert.equal(res.recipients[1]?.text, '<bad@x.test>: no such user');
      assert.deepEqual(sink.transactions[0]?.recipients, ['ok@x.test']);
    });
  });

  test('452 to RCPT defers with tooManyRecipients and the rest go in the next transaction', async () => {
    await withSink({ maxRecipients: 2 }, async (sink, connect) => {
      const c = await connect();
      const addrs = ['a@x.test', 'b@x.test', 'c@x.test', 'd@x.test'];
      const res = await c.sendMessage(makeTx(addrs));
      assert.deepEqual(
        res.recipients.map((r) => [r.status, r.tooManyRecipients ?? false]),
        [
          ['delivered', false],
          ['delivered', false],
          ['deferred', true],
          ['deferred', true],
        ],
      );
      const again = res.recipients.filter((r) => r.tooManyRecipients).map((r) => addrs[r.index]!);
      const res2 = await c.sendMessage(makeTx(again));
      assert.ok(res2.recipients.every((r) => r.status === 'delivered'));
      assert.deepEqual(
        sink.transactions.map((t) => t.recipients),
        [
          ['a@x.test', 'b@x.test'],
          ['c@x.test', 'd@x.test'],
        ],
      );
    });
  });

  test('452 with a mailbox-full enhanced code is not "too many recipients"', async () => {
    await withSink({ rcptReply: () => '452 4.2.2 mailbox full' }, async (_sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test']));
      assert.equal(res.recipients[0]?.status, 'deferred');
      assert.equal(res.recipients[0]?.tooManyRecipients, undefined);
    });
  });

  test('when every RCPT is refused no data is sent and the connection stays usable', async () => {
    await withSink({ rcptReply: () => '550 5.1.1 no' }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test', 'b@x.test']));
      assert.ok(res.recipients.every((r) => r.status === 'failed' && r.code === 550));
      assert.equal(res.reusable, true);
      assert.equal(sink.transactions.length, 0);
      assert.equal(c.usable, true);
    });
  });

  test('a refused MAIL FROM applies to every recipient', async () => {
    await withSink({ mailReply: () => '451 4.7.1 greylisted' }, async (_sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test', 'b@x.test']));
      assert.deepEqual(
        res.recipients.map((r) => [r.status, r.code, r.enhanced, r.stage]),
        [
          ['deferred', 451, '4.7.1', 'mail'],
          ['deferred', 451, '4.7.1', 'mail'],
        ],
      );
      assert.equal(res.reusable, true);
    });
  });

  test('a 4xx after the final dot defers every accepted recipient', async () => {
    await withSink({ dataReply: () => '451 4.3.0 queue trouble' }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test', 'b@x.test']));
      assert.deepEqual(
        res.recipients.map((r) => [r.status, r.code, r.enhanced, r.stage, r.remote]),
        [
          ['deferred', 451, '4.3.0', 'data', true],
          ['deferred', 451, '4.3.0', 'data', true],
        ],
      );
      assert.equal(sink.transactions.length, 0);
    });
  });

  test('a 5xx after the final dot fails every accepted recipient but not those refused earlier', async () => {
    const opts = {
      rcptReply: (a: string) => (a.startsWith('t') ? '450 4.2.0 try later' : undefined),
      dataReply: () => '554 5.6.0 content rejected',
    };
    await withSink(opts, async (_sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test', 'tmp@x.test']));
      assert.deepEqual(
        res.recipients.map((r) => [r.status, r.code]),
        [
          ['failed', 554],
          ['deferred', 450],
        ],
      );
    });
  });

  test('a disconnect during DATA defers every recipient and the connection is not reusable', async () => {
    await withSink({ disconnectDuringData: true }, async (_sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test', 'b@x.test']));
      assert.ok(res.recipients.every((r) => r.status === 'deferred' && r.stage === 'connection'));
      assert.match(res.recipients[0]!.text, /closed|reset|EPIPE/);
      assert.equal(res.reusable, false);
      assert.equal(c.usable, false);
      const later = await c.sendMessage(makeTx(['c@x.test']));
      assert.equal(later.recipients[0]?.status, 'deferred');
    });
  });

  test('a disconnect during BDAT defers every recipient', async () => {
    await withSink({ chunking: true, disconnectDuringData: true }, async (_sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test']));
      assert.equal(res.recipients[0]?.status, 'deferred');
      assert.equal(res.reusable, false);
    });
  });

  test('a connection dropped after the data arrived is a deferral (the duplicate case)', async () => {
    await withSink({ dropAfterData: true }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test']));
      assert.equal(res.recipients[0]?.status, 'deferred');
      assert.match(res.recipients[0]!.text, /end of data/);
      assert.equal(sink.transactions.length, 1, 'the peer has it: a retry will duplicate it');
    });
  });

  test('a message larger than the peer SIZE fails with 552 5.3.4 before MAIL is sent', async () => {
    await withSink({ size: 20 }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['a@x.test']));
      assert.deepEqual(
        [
          res.recipients[0]?.status,
          res.recipients[0]?.code,
          res.recipients[0]?.enhanced,
          res.recipients[0]?.remote,
        ],
        ['failed', 552, '5.3.4', false],
      );
      assert.ok(!sink.commands.some((l) => l.startsWith('MAIL')));
      assert.equal(res.reusable, true);
    });
  });

  test('a non-ASCII address to a peer without SMTPUTF8 fails with 553 5.6.7 before MAIL', async () => {
    await withSink({}, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['jörg@x.test']));
      assert.deepEqual(
        [res.recipients[0]?.status, res.recipients[0]?.code, res.recipients[0]?.enhanced],
        ['failed', 553, '5.6.7'],
      );
      assert.ok(!sink.commands.some((l) => l.startsWith('MAIL')));
    });
  });

  test('a non-ASCII address is sent with the SMTPUTF8 parameter when offered', async () => {
    await withSink({ smtputf8: true }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['jörg@x.test']));
      assert.equal(res.recipients[0]?.status, 'delivered');
      assert.deepEqual(sink.transactions[0]?.mailParams, ['SMTPUTF8']);
      assert.deepEqual(sink.transactions[0]?.recipients, ['jörg@x.test']);
    });
  });

  test('an address that would inject a command line fails locally and is never sent', async () => {
    await withSink({}, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['ok@x.test', 'evil@x.test>\r\nRSET']));
      assert.deepEqual(
        res.recipients.map((r) => [r.status, r.remote]),
        [
          ['delivered', true],
          ['failed', false],
        ],
      );
      assert.ok(!sink.commands.some((l) => l.includes('evil')));
    });
  });
});

describe('SmtpClient hostile and stalled peers', () => {
  test('a 554 greeting fails the session with the peer reply and a permanent kind', async () => {
    await withSink({ greeting: '554 5.7.1 no service' }, async (_sink, connect) => {
      await assert.rejects(connect(), (e: unknown) => {
        const err = e as { stage: string; kind: string; reply?: { code: number } };
        return err.stage === 'greeting' && err.kind === 'permanent' && err.reply?.code === 554;
      });
    });
  });

  test('an endless multi-line reply fails cleanly after the line limit', async () => {
    const line = `250-${'x'.repeat(60)}\r\n`;
    const peer = await rawPeer('220 hi\r\n', (l, sock) => {
      if (!l.startsWith('EHLO')) return undefined;
      // Keep writing until the client hangs up; memory on our side must stay bounded.
      const pump = () => {
        while (!sock.destroyed && sock.write(line.repeat(50)));
        if (!sock.destroyed) sock.once('drain', pump);
      };
      pump();
      return undefined;
    });
    try {
      await assert.rejects(
        SmtpClient.connect('127.0.0.1', peer.port, { name: 'c', tls: { mode: 'none' } }),
        (e: unknown) => {
          const err = e as { stage: string; message: string };
          return err.stage === 'ehlo' && /too many lines/.test(err.message);
        },
      );
      await peer.closed;
    } finally {
      await peer.close();
    }
  });

  test('an endless reply line without LF fails cleanly after the length limit', async () => {
    const peer = await rawPeer('220 hi\r\n', (_l, sock) => {
      const pump = () => {
        while (!sock.destroyed && sock.write('250 ' + 'y'.repeat(1000)));
        if (!sock.destroyed) sock.once('drain', pump);
      };
      pump();
      return undefined;
    });
    try {
      await assert.rejects(SmtpClient.connect('127.0.0.1', peer.port, { name: 'c' }), /reply line too long/);
      await peer.closed;
    } finally {
      await peer.close();
    }
  });

  test('bytes sent after the 220 to STARTTLS fail the session (no injection)', async () => {
    const peer = await rawPeer('220 hi\r\n', (l) => {
      if (l.startsWith('EHLO')) return '250-hi\r\n250 STARTTLS\r\n';
      if (l === 'STARTTLS') return '220 go ahead\r\n250 injected\r\n';
      return undefined;
    });
    try {
      await assert.rejects(
        SmtpClient.connect('127.0.0.1', peer.port, { name: 'c', tls: { mode: 'required' } }),
        /after its STARTTLS reply/,
      );
    } finally {
      await peer.close();
    }
  });

  test('a peer that never answers MAIL defers after exactly the RFC 5321 five minutes', async () => {
    const clock = new FakeClock();
    let mailSeen = false;
    const peer = await rawPeer('220 hi\r\n', (l) => {
      if (l.startsWith('MAIL')) mailSeen = true;
      return l.startsWith('EHLO') ? '250 hi\r\n' : undefined;
    });
    try {
      const c = await SmtpClient.connect('127.0.0.1', peer.port, { name: 'c', clock, tls: { mode: 'none' } });
      const p = c.sendMessage(makeTx(['a@x.test']));
      // The client waits for the MAIL reply (its timer armed) once the peer has the command.
      await waitFor(() => mailSeen && clock.pending > 0, 'MAIL sent and its reply awaited');
      clock.advance(300_000 - 1);
      await new Promise((r) => setImmediate(r));
      assert.equal(c.usable, false, 'still busy');
      assert.equal(c.connection.alive, true);
      clock.advance(1);
      const res = await p;
      assert.equal(res.recipients[0]?.status, 'deferred');
      assert.match(res.recipients[0]!.text, /sending MAIL FROM: timeout waiting for MAIL reply/);
      assert.equal(res.reusable, false);
    } finally {
      await peer.close();
    }
  });

  test('configured timeouts apply: a slow peer defers the message', async () => {
    await withSink({ delayMs: 200 }, async (_sink, connect) => {
      const c = await connect({ timeouts: { rcpt: 50 } });
      const res = await c.sendMessage(makeTx(['a@x.test']));
      assert.equal(res.recipients[0]?.status, 'deferred');
      assert.match(res.recipients[0]!.text, /timeout waiting for RCPT reply/);
    });
  });
});
