// The incoming-checks stage on its own, with a table resolver: what it prepends, what it
// removes, which mail it leaves alone, and how many keys one message can make it look up.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { StaticResolver } from '../../test/support/static-resolver.js';
import { nullLogger } from '../log.js';
import type { AcceptStage, DraftMessage } from '../policy/pipeline.js';
import type { SessionContext } from '../smtp/server/hooks.js';
import { authCheckStage, MAX_SIGNATURES } from './check-stage.js';
import { dkimSignatures } from './dkim-sign.js';
import { splitMessage } from './message.js';

const ctx = {} as SessionContext;
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pub = rsa.publicKey.export({ type: 'spki', format: 'der' }).toString('base64');

function draft(text: string, ip = '192.0.2.7'): DraftMessage {
  const data = [Buffer.from(text, 'latin1')];
  return {
    id: 'T1',
    sender: 'a@sender.test',
    recipients: [{ address: 'u@local.test' }],
    params: {},
    data,
    size: data[0]?.length ?? 0,
    client: { ip, port: 1, helo: 'mail.sender.test' },
    receivedAt: 0,
  };
}

const text = (m: DraftMessage) => Buffer.concat(m.data).toString('latin1');
const message = 'From: <a@sender.test>\r\nSubject: s\r\n\r\nhello\r\n';

describe('the incoming checks stage', () => {
  let resolver: StaticResolver;
  let stage: AcceptStage;
  before(async () => {
    resolver = new StaticResolver({
      'sender.test': { TXT: ['v=spf1 ip4:192.0.2.7 -all'] },
      '_dmarc.sender.test': { TXT: ['v=DMARC1; p=reject'] },
      's1._domainkey.sender.test': { TXT: [`v=DKIM1; k=rsa; p=${pub}`] },
    });
    stage = await authCheckStage({
      authservId: 'mx.test',
      dmarcReject: false,
      tempfailOnDnsError: false,
      timeoutMs: 10_000,
      resolver,
      relayNetworks: [],
      logger: nullLogger,
    });
  });

  test('prepends one Authentication-Results with our id and removes forged ones', async () => {
    const m = draft(`Authentication-Results: mx.test; dmarc=pass\r\n${message}`);
    assert.equal(await stage.run(m, ctx), null);
    const out = text(m);
    assert.match(
      out,
      /^Authentication-Results: mx\.test;\r\n\tspf=pass [^\r]*;\r\n\tdkim=none[^\r]*;\r\n\tdmarc=pass /,
    );
    assert.equal(out.match(/^Authentication-Results:/gm)?.length, 1);
    assert.ok(out.endsWith(message));
    assert.equal(m.size, Buffer.byteLength(out, 'latin1'));
  });

  test('leaves mail from authenticated clients and relay_networks alone', async () => {
    const m = draft(message);
    m.client.auth = 'alice';
    assert.equal(await stage.run(m, ctx), null);
    assert.equal(text(m), message);
  });

  test(`verifies at most ${MAX_SIGNATURES} signatures, however many a message carries`, async () => {
    const { header, body } = splitMessage([Buffer.from(message)]);
    const keys = Array.from({ length: 12 }, (_, i) => ({
      domain: 'sender.test',
      selector: `k${i}`,
      key: rsa.privateKey,
      algorithm: 'rsa-sha256' as const,
    }));
    const sigs = await dkimSignatures(keys, header, body, Date.now());
    const before = resolver.queries.length;
    const m = draft(sigs.join('') + message);
    await stage.run(m, ctx);
    const keyLookups = resolver.queries.slice(before).filter((q) => q.includes('._domainkey.'));
    assert.equal(keyLookups.length, MAX_SIGNATURES, keyLookups.join('\n'));
    assert.ok(text(m).includes(sigs.join('')), 'the message itself keeps every signature');
  });
});
