// The client against the scriptable sink over loopback: the happy paths and the negotiation
// (pipelining, HELO fallback, STARTTLS, AUTH, BDAT, DSN parameters, connection reuse).

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { probe } from './probe.js';
import { SmtpClient } from './session.js';
import { BODY, makeTx, withSink } from '../../../test/support/client.js';

describe('SmtpClient basic delivery', () => {
  test('delivers a message and reports every recipient delivered', async () => {
    await withSink({}, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['b@example.net', 'c@example.net']));
      assert.deepEqual(
        res.recipients.map((r) => [r.index, r.status, r.code, r.enhanced, r.remote]),
        [
          [0, 'delivered', 250, '2.0.0', true],
          [1, 'delivered', 250, '2.0.0', true],
        ],
      );
      assert.equal(res.reusable, true);
      assert.equal(sink.transactions[0]?.data.toString(), BODY);
      assert.deepEqual(sink.transactions[0]?.recipients, ['b@example.net', 'c@example.net']);
      await c.quit();
      assert.equal(sink.commands.at(-1), 'QUIT');
    });
  });

  test('pipelines MAIL, every RCPT and DATA in one write when PIPELINING is offered', async () => {
    await withSink({}, async (sink, connect) => {
      const c = await connect();
      await c.sendMessage(makeTx(['b@x.test', 'c@x.test', 'd@x.test']));
      const group = sink.batches.find((b) => b[0]?.startsWith('MAIL'));
      assert.deepEqual(
        group?.map((l) => l.split(/[ :]/)[0]),
        ['MAIL', 'RCPT', 'RCPT', 'RCPT', 'DATA'],
      );
    });
  });

  test('sends one command at a time when PIPELINING is not offered', async () => {
    await withSink({ pipelining: false }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(makeTx(['b@x.test', 'c@x.test']));
      assert.equal(
        res.recipients.every((r) => r.status === 'delivered'),
        true,
      );
      assert.ok(sink.batches.every((b) => b.length === 1));
      assert.equal(sink.transactions.length, 1);
    });
  });

  test('falls back to HELO when EHLO gets a 5xx and then uses no extensions', async () => {
    await withSink({ ehlo: false, size: 1000 }, async (sink, connect) => {
      const c = await connect();
      assert.equal(c.extensions.pipelining, false);
      const res = await c.sendMessage(makeTx(['b@x.test']));
      assert.equal(res.recipients[0]?.status, 'delivered');
      assert.ok(sink.commands.includes('HELO client.test'));
      assert.ok(sink.commands.includes('MAIL FROM:<a@example.org>'), 'no SIZE parameter without EHLO');
    });
  });

  test('dot-stuffs lines starting with a dot, across chunk boundaries, and ends an unterminated message', async () => {
    await withSink({}, async (sink, connect) => {
      const c = await connect();
      const parts = ['Subject: dots\r\n\r\n.one\r\n', '.two\r\n..three\r\n.', '\r\nlast line without CRLF'];
      const data = parts.map((p) => Buffer.from(p));
      const res = await c.sendMessage({ ...makeTx(['b@x.test']), data, size: 60 });
      assert.equal(res.recipients[0]?.status, 'delivered');
      assert.equal(sink.transactions[0]?.data.toString(), parts.join('') + '\r\n');
    });
  });

  test('streams data given as an async iterable, with DATA and with BDAT', async () => {
    for (const chunking of [false, true]) {
      await withSink({ chunking }, async (sink, connect) => {
        const c = await connect();
        const parts = ['Subject: s\r\n', '\r\n', '.dot\r\n', 'end\r\n'];
        async function* gen() {
          for (const p of parts) yield Buffer.from(p);
        }
        const res = await c.sendMessage({ ...makeTx(['b@x.test']), data: gen() });
        assert.equal(res.recipients[0]?.status, 'delivered', `chunking=${chunking}`);
        assert.equal(sink.transactions[0]?.data.toString(), parts.join(''));
        assert.equal(sink.transactions[0]?.chunked, chunking);
      });
    }
  });

  test('uses BDAT when CHUNKING is offered and sends the data unstuffed', async () => {
    await withSink({ chunking: true }, async (sink, connect) => {
      const c = await connect();
      const body = 'Subject: b\r\n\r\n.\r\n..\r\nend\r\n';
      const res = await c.sendMessage(makeTx(['b@x.test'], body));
      assert.equal(res.recipients[0]?.status, 'delivered');
      assert.equal(sink.transactions[0]?.chunked, true);
      assert.equal(sink.transactions[0]?.data.toString(), body);
      assert.ok(sink.commands.some((l) => l === `BDAT ${Buffer.byteLength(body)} LAST`));
      assert.ok(!sink.commands.includes('DATA'));
    });
  });

  test('passes DSN, SIZE and BODY parameters when the peer offers them', async () => {
    await withSink({ dsn: true, size: 0 }, async (sink, connect) => {
      const c = await connect();
      const tx = makeTx(['b@x.test', 'c@x.test'], BODY, { ret: 'HDRS', envid: 'id+1=2', body8bit: true });
      tx.recipients[0] = { address: 'b@x.test', notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;B+b@x.test' };
      tx.recipients[1] = { address: 'c@x.test', notify: ['NEVER'] };
      await c.sendMessage(tx);
      const t = sink.transactions[0]!;
      assert.deepEqual(t.mailParams, [`SIZE=${tx.size}`, 'BODY=8BITMIME', 'RET=HDRS', 'ENVID=id+2B1+3D2']);
      assert.deepEqual(t.rcptParams, [
        ['NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;B+2Bb@x.test'],
        ['NOTIFY=NEVER'],
      ]);
    });
  });

  test('omits DSN parameters when the peer does not offer DSN', async () => {
    await withSink({}, async (sink, connect) => {
      const c = await connect();
      const tx = makeTx(['b@x.test'], BODY, { ret: 'FULL', envid: 'x' });
      tx.recipients[0] = { address: 'b@x.test', notify: ['NEVER'], orcpt: 'rfc822;b@x.test' };
      await c.sendMessage(tx);
      assert.deepEqual(sink.transactions[0]?.mailParams, []);
      assert.deepEqual(sink.transactions[0]?.rcptParams, [[]]);
    });
  });

  test('reuses one connection for several messages with RSET between them', async () => {
    await withSink({}, async (sink, connect) => {
      const c = await connect();
      for (let i = 0; i < 5; i++) {
        const res = await c.sendMessage(makeTx([`r${i}@x.test`]));
        assert.equal(res.recipients[0]?.status, 'delivered');
        assert.equal(res.reusable, true);
      }
      assert.equal(c.messagesSent, 5);
      assert.equal(sink.connections, 1);
      assert.equal(sink.transactions.length, 5);
      assert.equal(sink.commands.filter((l) => l === 'RSET').length, 4);
    });
  });

  test('without rsetBeforeReuse, RSET is sent only after an aborted transaction', async () => {
    await withSink(
      { rcptReply: (a) => (a.startsWith('no') ? '550 5.1.1 no' : undefined) },
      async (sink, connect) => {
        const c = await connect({ rsetBeforeReuse: false });
        await c.sendMessage(makeTx(['a@x.test']));
        await c.sendMessage(makeTx(['b@x.test']));
        assert.equal(sink.commands.filter((l) => l === 'RSET').length, 0);
        await c.sendMessage(makeTx(['no@x.test']));
        const res = await c.sendMessage(makeTx(['c@x.test']));
        assert.equal(res.recipients[0]?.status, 'delivered');
        assert.equal(sink.commands.filter((l) => l === 'RSET').length, 1);
      },
    );
  });
});

describe('SmtpClient TLS and AUTH', () => {
  test('upgrades with STARTTLS when offered and repeats EHLO', async () => {
    await withSink({ starttls: true }, async (sink, connect) => {
      const c = await connect();
      assert.equal(c.secure, true);
      assert.equal(c.extensions.starttls, false, 'extensions are those learnt after TLS');
      await c.sendMessage(makeTx(['b@x.test']));
      assert.equal(sink.transactions[0]?.tls, true);
      assert.equal(sink.commands.filter((l) => l.startsWith('EHLO')).length, 2);
    });
  });

  test('stays in plain text when TLS mode is none', async () => {
    await withSink({ starttls: true }, async (sink, connect) => {
      const c = await connect({ tls: { mode: 'none' } });
      assert.equal(c.secure, false);
      assert.ok(!sink.commands.includes('STARTTLS'));
    });
  });

  test('required TLS fails the session when STARTTLS is not offered', async () => {
    await withSink({}, async (_sink, connect) => {
      await assert.rejects(connect({ tls: { mode: 'required' } }), (e: unknown) => {
        const err = e as { stage: string; kind: string };
        return err.stage === 'starttls' && err.kind === 'transient';
      });
    });
  });

  test('a certificate that fails verification: required TLS fails, opportunistic retries in plain text', async () => {
    await withSink({ starttls: true }, async (sink, connect) => {
      await assert.rejects(connect({ tls: { mode: 'required', verify: true } }), /TLS handshake/);
      const c = await connect({ tls: { mode: 'opportunistic', verify: true } });
      assert.equal(c.secure, false);
      await c.sendMessage(makeTx(['b@x.test']));
      assert.equal(sink.transactions[0]?.tls, false);
    });
  });

  test('a verified certificate is accepted when its CA is given', async () => {
    await withSink({ starttls: true }, async (_sink, connect) => {
      const { sinkCertificate } = await import('../../../test/support/sink.js');
      const { cert } = await sinkCertificate();
      const c = await connect({ tls: { mode: 'required', verify: true, ca: cert, servername: 'localhost' } });
      assert.equal(c.secure, true);
    });
  });

  test('authenticates with PLAIN over TLS and CRAM-MD5 in plain text', async () => {
    const auth = { user: 'u', pass: 'p w' };
    await withSink({ starttls: true, auth, requireAuth: true }, async (sink, connect) => {
      const c = await connect({ auth });
      assert.equal(c.authenticated, 'PLAIN');
      const res = await c.sendMessage(makeTx(['b@x.test']));
      assert.equal(res.recipients[0]?.status, 'delivered');
      assert.equal(sink.transactions[0]?.authUser, 'u');
      const d = await connect({ auth, tls: { mode: 'none' } });
      assert.equal(d.authenticated, 'CRAM-MD5');
    });
  });

  test('authenticates with LOGIN when asked to', async () => {
    const auth = { user: 'u', pass: 'secret' };
    await withSink({ auth, requireAuth: true }, async (_sink, connect) => {
      const c = await connect({ auth: { ...auth, mechanisms: ['LOGIN'], allowPlaintext: true } });
      assert.equal(c.authenticated, 'LOGIN');
    });
  });

  test('refuses PLAIN and LOGIN without TLS unless allowed', async () => {
    const auth = { user: 'u', pass: 'secret' };
    await withSink({ auth }, async (_sink, connect) => {
      await assert.rejects(
        connect({ tls: { mode: 'none' }, auth: { ...auth, mechanisms: ['PLAIN', 'LOGIN'] } }),
        {
          stage: 'auth',
          kind: 'transient',
        },
      );
    });
  });

  test('a rejected password is a transient auth failure', async () => {
    await withSink({ auth: { user: 'u', pass: 'right' } }, async (_sink, connect) => {
      await assert.rejects(connect({ auth: { user: 'u', pass: 'wrong' } }), (e: unknown) => {
        const err = e as { stage: string; kind: string; message: string };
        return err.stage === 'auth' && err.kind === 'transient' && /535/.test(err.message);
      });
    });
  });
});

describe('probe and adopt', () => {
  test('probe is true for a greeting SMTP server and false otherwise', async () => {
    await withSink({}, async (sink) => {
      assert.equal(await probe(sink.host, sink.port), true);
      assert.equal(sink.commands.at(-1), 'QUIT');
    });
    await withSink({ greeting: '554 5.3.2 not now' }, async (sink) => {
      assert.equal(await probe(sink.host, sink.port), false);
    });
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    assert.equal(await probe('127.0.0.1', port, { timeoutMs: 2000 }), false);
  });

  test('adopts a connected socket whose greeting was already read by someone else', async () => {
    await withSink({}, async (sink) => {
      const sock = net.connect(sink.port, sink.host);
      // Like the ODMR turnaround: another role read the first bytes; they belong to the client.
      const early = await new Promise<Buffer>((resolve) => sock.once('data', resolve));
      sock.pause();
      const c = await SmtpClient.adopt(sock, { name: 'odmr.test', initialBytes: early });
      assert.equal(c.greeting?.code, 220);
      const res = await c.sendMessage(makeTx(['b@x.test']));
      assert.equal(res.recipients[0]?.status, 'delivered');
      await c.quit();
    });
  });
});

describe('SmtpClient content the peer must support', () => {
  const binary = Buffer.from([0x46, 0x3a, 0x20, 0x61, 13, 10, 13, 10, 0, 1, 2, 0xff, 13, 0xfe, 10, 0x80]);

  test('a BODY=BINARYMIME message to a peer without BINARYMIME fails with 5.6.3 before MAIL', async () => {
    await withSink({ chunking: true }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(
        makeTx(['b@x.test'], '', { data: [binary], size: binary.length, binary: true }),
      );
      assert.equal(res.recipients[0]?.status, 'failed');
      assert.equal(res.recipients[0]?.enhanced, '5.6.3');
      assert.equal(res.recipients[0]?.remote, false);
      assert.equal(sink.commands.filter((l) => l.startsWith('MAIL')).length, 0);
    });
  });

  test('a BODY=BINARYMIME message goes with BDAT to a peer offering BINARYMIME and CHUNKING', async () => {
    await withSink({ chunking: true, binaryMime: true }, async (sink, connect) => {
      const c = await connect();
      const res = await c.sendMessage(
        makeTx(['b@x.test'], '', { data: [binary], size: binary.length, binary: true }),
      );
      assert.equal(res.recipients[0]?.status, 'delivered');
      assert.ok(sink.transactions[0]?.mailParams.includes('BODY=BINARYMIME'));
      assert.ok(sink.transactions[0]?.chunked);
      assert.ok(sink.transactions[0]?.data.equals(binary));
    });
  });
});
