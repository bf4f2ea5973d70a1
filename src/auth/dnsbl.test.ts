import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { nullLogger } from '../log.js';
import { StaticResolver } from '../../test/support/static-resolver.js';
import { dnsblFilter, dnsblName, isListed } from './dnsbl.js';
import type { SessionContext } from '../smtp/server/hooks.js';

describe('DNSBL names and answers', () => {
  test('IPv4 octets and IPv6 nibbles are reversed under the zone (RFC 5782)', () => {
    assert.equal(dnsblName('192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
    assert.equal(dnsblName('::ffff:192.0.2.99', 'bl.test'), '99.2.0.192.bl.test');
    assert.equal(
      dnsblName('2001:db8:1:2::abcd', 'bl.test'),
      'd.c.b.a.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test',
    );
    assert.equal(dnsblName('::1', 'bl.test')?.split('.').length, 34);
    assert.equal(dnsblName('not-an-ip', 'bl.test'), undefined);
  });

  test('any 127/8 answer lists except the 127.255.255.x error codes; a match list narrows it', () => {
    assert.equal(isListed(['127.0.0.2'], undefined), true);
    assert.equal(isListed(['127.255.255.254'], undefined), false);
    assert.equal(isListed(['10.0.0.1'], undefined), false);
    assert.equal(isListed(['127.0.0.4'], ['127.0.0.2']), false);
    assert.equal(isListed(['127.0.0.4', '127.0.0.2'], ['127.0.0.2']), true);
  });

  test('a failing list does not refuse; the first listing list is named, with its reason', async () => {
    const resolver = new StaticResolver({
      '2.0.0.127.down.test': 'ETIMEOUT',
      '2.0.0.127.one.test': { A: ['127.0.0.2'], TXT: ['see https://one.test/\r\nlookup'] },
      '2.0.0.127.two.test': { A: ['127.0.0.3'] },
    });
    const f = dnsblFilter({
      lists: [
        { zone: 'down.test', at: 'rcpt', match: undefined },
        { zone: 'one.test', at: 'rcpt', match: undefined },
        { zone: 'two.test', at: 'rcpt', match: undefined },
      ],
      resolver,
      relayNetworks: [],
      logger: nullLogger,
    });
    const ctx = { client: { ip: '127.0.0.2', port: 1 } } as SessionContext;
    assert.deepEqual(await f.checkRecipient?.('a@b.test', ctx), {
      code: 554,
      enhanced: '5.7.1',
      text: 'Service unavailable; client [127.0.0.2] blocked using one.test; see https://one.test/  lookup',
    });
    const authed = { client: { ip: '127.0.0.2', port: 1, auth: 'alice' } } as SessionContext;
    assert.equal(await f.checkRecipient?.('a@b.test', authed), null);
    assert.equal(f.connect, undefined);
  });

  test('a recipient an [[access]] permit rule let through is not looked up', async () => {
    const resolver = new StaticResolver({ '2.0.0.127.one.test': { A: ['127.0.0.2'] } });
    const permitted = new Set<SessionContext>();
    const f = dnsblFilter({
      lists: [{ zone: 'one.test', at: 'rcpt', match: undefined }],
      resolver,
      relayNetworks: [],
      logger: nullLogger,
      permitted: (ctx) => permitted.has(ctx),
    });
    const ctx = { client: { ip: '127.0.0.2', port: 1 } } as SessionContext;
    assert.equal((await f.checkRecipient?.('a@b.test', ctx))?.code, 554);
    permitted.add(ctx);
    assert.equal(await f.checkRecipient?.('a@b.test', ctx), null);
  });
});
