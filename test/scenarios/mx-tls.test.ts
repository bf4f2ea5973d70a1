// TLS to MX hosts as mail to the Internet meets it, against a real `logmta serve` (mx-kit.ts):
// opportunistic STARTTLS to a peer with a self-signed certificate goes on encrypted; a peer
// whose TLS handshake fails (it speaks only TLS 1.1, which the client refuses) gets the mail in
// plain text on a new connection, once (docs/delivery.md, TLS policy); a route that requires TLS
// never falls back to plain text.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sendMail } from '../support/inject.js';
import { mxSink } from '../support/mx-hosts.js';
import type { SinkOptions, SmtpSink } from '../support/sink.js';
import { mxScenes, mxZone, nthOutcome } from './mx-kit.js';

const mx = mxScenes();
const skip = await mx.skip;

async function host(opts: SinkOptions): Promise<SmtpSink> {
  const s = await mxSink(opts);
  mx.later(() => s.close());
  return s;
}

/** A peer that offers STARTTLS but only TLS 1.0/1.1: every handshake with a Node 20 client fails. */
const oldTls: SinkOptions = { starttls: true, tlsContext: { minVersion: 'TLSv1', maxVersion: 'TLSv1.1' } };

describe('STARTTLS to MX hosts, against logmta serve', { skip }, () => {
  test('a self-signed certificate does not stop opportunistic TLS: delivered, encrypted', async () => {
    const peer = await host({ starttls: true });
    const w = await mx.world(mxZone([[10, peer.host]]));
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.equal(peer.transactions.length, 1);
    assert.equal(peer.transactions[0]?.tls, true);
  });

  test('a failed TLS handshake is retried in plain text on a new connection: delivered once', async () => {
    const peer = await host(oldTls);
    const w = await mx.world(mxZone([[10, peer.host]]));
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'delivered', JSON.stringify(o));
    assert.deepEqual(
      peer.transactions.map((t) => [t.recipients, t.tls]),
      [[['u@dst.test'], false]],
    );
    assert.equal(peer.connections, 2, 'the TLS attempt, then plain text');
    assert.equal(peer.commands.filter((c) => c === 'STARTTLS').length, 1, 'no STARTTLS on the retry');
  });

  test('a failed TLS handshake on the best MX is not a reason to try the backup: the best MX gets it in plain text', async () => {
    const best = await host(oldTls);
    const backup = await host({ starttls: true });
    const w = await mx.world(
      mxZone([
        [10, best.host],
        [20, backup.host],
      ]),
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    assert.equal((await nthOutcome(w.stage, 'u@dst.test')).msg, 'delivered');
    assert.equal(best.transactions.length, 1);
    assert.equal(backup.connections, 0);
  });

  test('require_tls: a failed handshake defers, and nothing is sent in plain text', async () => {
    const peer = await host(oldTls);
    const w = await mx.world(
      { zones: ['hosts.test'], records: [`smart.hosts.test. 300 IN A ${peer.host}`] },
      {
        extra:
          '[queue]\nretry = ["1h"]\n[[route]]\ndomain = "dst.test"\nhost = "smart.hosts.test"\nrequire_tls = true\n',
      },
    );
    await sendMail(w.stage.port, { from: 'a@src.test', to: ['u@dst.test'] });
    const o = await nthOutcome(w.stage, 'u@dst.test');
    assert.equal(o.msg, 'deferred', JSON.stringify(o));
    assert.equal(peer.transactions.length, 0);
    assert.ok(!peer.commands.some((c) => /^MAIL/i.test(c)), 'no MAIL in clear');
  });
});
