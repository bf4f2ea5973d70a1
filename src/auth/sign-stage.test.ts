// Who gets mail signed, with which keys: the signing stage on its own.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { parseCidr } from '../config/index.js';
import type { DkimKeyConfig } from '../config/schema.js';
import { nullLogger } from '../log.js';
import type { DraftMessage } from '../policy/pipeline.js';
import type { SessionContext } from '../smtp/server/hooks.js';
import { systemClock } from '../util/clock.js';
import { dkimSignStage } from './sign-stage.js';

const ed = generateKeyPairSync('ed25519').privateKey;
const key = (domain: string, selector: string, extra: Partial<DkimKeyConfig> = {}): DkimKeyConfig => ({
  domain,
  selector,
  subdomains: false,
  users: undefined,
  networks: undefined,
  keyFile: '',
  key: ed,
  algorithm: 'ed25519-sha256',
  record: '',
  ...extra,
});

const stage = dkimSignStage({
  keys: [
    key('example.org', 'a'),
    key('example.org', 'b', { users: ['alice'] }),
    key('parent.test', 'p', { subdomains: true }),
    key('tenant.test', 't', { users: ['bob'], networks: [parseCidr('10.1.0.0/16')] }),
  ],
  relayNetworks: [parseCidr('10.0.0.0/8')],
  clock: systemClock,
  logger: nullLogger,
});
const session = {} as SessionContext;

/** The selectors a message from `client` with this From: gets signed with. */
async function selectors(from: string, client: { ip: string; auth?: string }, local = false) {
  const ctx = local ? undefined : session; // a local submission has no session
  const data = [Buffer.from(`From: ${from}\r\nSubject: s\r\n\r\nbody\r\n`)];
  const m: DraftMessage = {
    id: 'T',
    sender: 'x@y.test',
    recipients: [{ address: 'r@remote.test' }],
    params: {},
    data,
    size: data[0]?.length ?? 0,
    client: { port: 1, ...client },
    receivedAt: 0,
  };
  assert.equal(await stage.run(m, ctx), null, 'signing never refuses');
  const head = Buffer.concat(m.data).toString('latin1');
  assert.equal(m.size, Buffer.byteLength(head, 'latin1'));
  return [...head.matchAll(/^DKIM-Signature:[\s\S]*? s=([a-z]+);/gm)].map((x) => x[1]);
}

describe('the DKIM signing stage', () => {
  test('outgoing mail is signed with every key of its From: domain that the client may use', async () => {
    assert.deepEqual(await selectors('<x@example.org>', { ip: '10.0.0.5' }), ['a']);
    assert.deepEqual(await selectors('<x@example.org>', { ip: '192.0.2.1', auth: 'alice' }), ['a', 'b']);
    assert.deepEqual(await selectors('<x@example.org>', { ip: '192.0.2.1', auth: 'mallory' }), ['a']);
    assert.deepEqual(await selectors('<x@example.org>', { ip: '127.0.0.1' }, true), ['a', 'b'], 'local');
  });

  test('mail from outside, from several domains, or from a domain without a key is not signed', async () => {
    assert.deepEqual(await selectors('<x@example.org>', { ip: '192.0.2.1' }), []);
    assert.deepEqual(await selectors('<x@example.org>, <y@other.test>', { ip: '10.0.0.5' }), []);
    assert.deepEqual(await selectors('<x@other.test>', { ip: '10.0.0.5' }), []);
    assert.deepEqual(await selectors('undisclosed:;', { ip: '10.0.0.5' }), []);
  });

  test('subdomains = true covers names below the key domain, not look-alikes', async () => {
    assert.deepEqual(await selectors('<x@mail.parent.test>', { ip: '10.0.0.5' }), ['p']);
    assert.deepEqual(await selectors('<x@notparent.test>', { ip: '10.0.0.5' }), []);
  });

  test("users and networks keep one tenant from signing in another one's name", async () => {
    assert.deepEqual(await selectors('<x@tenant.test>', { ip: '10.1.2.3' }), ['t']);
    assert.deepEqual(
      await selectors('<x@tenant.test>', { ip: '10.2.0.1' }),
      [],
      'relay client outside networks',
    );
    assert.deepEqual(await selectors('<x@tenant.test>', { ip: '10.2.0.1', auth: 'bob' }), ['t']);
    assert.deepEqual(
      await selectors('<x@tenant.test>', { ip: '10.1.2.3', auth: 'alice' }),
      [],
      'another user',
    );
  });
});
