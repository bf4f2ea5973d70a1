// The sink must be a correct SMTP server before client tests can trust it: pipelined commands,
// dot-unstuffing, BDAT by count, and the cues tests rely on.

import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmtpClient } from '../../src/smtp/client/index.js';
import { makeTx } from './client.js';
import { SmtpSink } from './sink.js';

/** Writes `input` in one go and collects `n` complete replies (as "code text" of their last line). */
function talk(port: number, input: string | Buffer, n: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const replies: string[] = [];
    let acc = '';
    s.on('error', reject);
    s.on('connect', () => s.write(input));
    s.on('data', (d) => {
      acc += d.toString('latin1');
      let i = acc.indexOf('\r\n');
      while (i >= 0) {
        const line = acc.slice(0, i);
        acc = acc.slice(i + 2);
        if (line[3] !== '-') replies.push(line);
        i = acc.indexOf('\r\n');
      }
      if (replies.length >= n) {
        s.destroy();
        resolve(replies);
      }
    });
    s.on('close', () => resolve(replies));
  });
}

describe('SmtpSink', () => {
  test('answers a pipelined transaction in order and records unstuffed data', async () => {
    const sink = await SmtpSink.start();
    try {
      const input =
        'EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n' +
        'Subject: t\r\n\r\n..dot line\r\n.\r\nQUIT\r\n';
      const r = await talk(sink.port, input, 8);
      assert.deepEqual(
        r.map((l) => l.slice(0, 3)),
        ['220', '250', '250', '250', '250', '354', '250', '221'],
      );
      assert.equal(sink.transactions.length, 1);
      const tx = sink.transactions[0]!;
      assert.equal(tx.sender, 'a@x');
      assert.deepEqual(tx.recipients, ['b@y', 'c@y']);
      assert.equal(tx.data.toString(), 'Subject: t\r\n\r\n.dot line\r\n');
    } finally {
      await sink.close();
    }
  });

  test('reads BDAT chunks by count, including bytes that look like commands', async () => {
    const sink = await SmtpSink.start({ chunking: true });
    try {
      const body = 'X: 1\r\n\r\n.\r\nQUIT\r\n';
      const input = `EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@y>\r\nBDAT 4\r\nX: 1BDAT ${body.length - 4} LAST\r\n${body.slice(4)}`;
      const r = await talk(sink.port, input, 6);
      assert.deepEqual(
        r.map((l) => l.slice(0, 3)),
        ['220', '250', '250', '250', '250', '250'],
      );
      assert.equal(sink.transactions[0]?.data.toString(), body);
      assert.equal(sink.transactions[0]?.chunked, true);
    } finally {
      await sink.close();
    }
  });

  test('applies RCPT and end-of-data cues and does not record a refused message', async () => {
    const sink = await SmtpSink.start({
      rcptReply: (a) => (a.startsWith('bad') ? '550 5.1.1 no such user' : undefined),
      dataReply: () => '451 4.3.0 try later',
    });
    try {
      const input = 'HELO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<bad@y>\r\nRCPT TO:<ok@y>\r\nDATA\r\nhi\r\n.\r\n';
      const r = await talk(sink.port, input, 7);
      assert.deepEqual(
        r.map((l) => l.slice(0, 3)),
        ['220', '250', '250', '550', '250', '354', '451'],
      );
      assert.equal(sink.transactions.length, 0);
    } finally {
      await sink.close();
    }
  });

  test('speaks LMTP on a unix socket: LHLO, one reply per recipient, records those it took', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sink-lmtp-'));
    const sink = await SmtpSink.start({
      lmtp: true,
      path: join(dir, 'lmtp.sock'),
      lmtpReply: (a) => (a === 'c@y' ? '552 5.2.2 over quota' : undefined),
    });
    try {
      const c = await SmtpClient.connect('', 0, {
        name: 'c',
        lmtp: true,
        socketPath: join(dir, 'lmtp.sock'),
      });
      const res = await c.sendMessage(makeTx(['b@y', 'c@y']));
      await c.quit();
      assert.deepEqual(
        res.recipients.map((r) => `${r.status} ${r.code}`),
        ['delivered 250', 'failed 552'],
      );
      assert.deepEqual(
        sink.transactions.map((t) => t.recipients),
        [['b@y']],
      );
      assert.ok(sink.commands.some((l) => l.startsWith('LHLO ')));
    } finally {
      await sink.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('refuses EHLO when configured for HELO only', async () => {
    const sink = await SmtpSink.start({ ehlo: false });
    try {
      const r = await talk(sink.port, 'EHLO c\r\nHELO c\r\n', 3);
      assert.deepEqual(
        r.map((l) => l.slice(0, 3)),
        ['220', '502', '250'],
      );
    } finally {
      await sink.close();
    }
  });
});
