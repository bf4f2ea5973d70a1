import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { generate } from 'selfsigned';
import type { TlsaRecord } from '../../dns/types.js';
import { prng } from '../../../test/support/prng.js';
import { associationData, daneVerify, usableTlsa } from './tlsa.js';

interface Made {
  cert: string;
  key: string;
  der: Buffer;
  x: X509Certificate;
}

const DAY = 86_400_000;

async function make(cn: string, o: { ca?: Made; isCa?: boolean; names?: string[] } = {}): Promise<Made> {
  const g = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(Date.now() - DAY),
    notAfterDate: new Date(Date.now() + 30 * DAY),
    ...(o.ca ? { ca: { key: o.ca.key, cert: o.ca.cert } } : {}),
    extensions: o.isCa
      ? [
          { name: 'basicConstraints', cA: true, critical: true },
          { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
        ]
      : [
          { name: 'basicConstraints', cA: false },
          {
            name: 'subjectAltName',
            altNames: (o.names ?? [cn]).map((value) => ({ type: 2 as const, value })),
          },
        ],
  });
  const x = new X509Certificate(g.cert);
  return { cert: g.cert, key: g.private, der: x.raw, x };
}

const rec = (usage: number, selector: number, matching: number, c: Made): TlsaRecord => ({
  usage,
  selector,
  matching,
  data: associationData(c.x, selector, matching),
});

let root: Made;
let inter: Made;
let leaf: Made;
let otherRoot: Made;
let foreignLeaf: Made;
let wildLeaf: Made;
let partialLeaf: Made;
const NAMES = ['mx1.dst.test'];

before(async () => {
  root = await make('test root', { isCa: true });
  inter = await make('test intermediate', { ca: root, isCa: true });
  leaf = await make('mx1.dst.test', { ca: inter });
  otherRoot = await make('other root', { isCa: true });
  foreignLeaf = await make('mx1.dst.test', { ca: otherRoot });
  wildLeaf = await make('*.dst.test', { ca: root });
  partialLeaf = await make('mx*.dst.test', { ca: root });
});

const now = () => Date.now();

describe('usable TLSA records for SMTP (RFC 7672 §3.1)', () => {
  test('DANE-TA(2) and DANE-EE(3) with selectors 0/1, matching 0/1/2 only', () => {
    for (let usage = 0; usage < 5; usage++)
      for (let selector = 0; selector < 3; selector++)
        for (let matching = 0; matching < 4; matching++)
          assert.equal(
            usableTlsa({ usage, selector, matching, data: Buffer.alloc(32) }),
            usage >= 2 && usage <= 3 && selector <= 1 && matching <= 2,
            `${usage} ${selector} ${matching}`,
          );
  });
});

describe('DANE-EE(3)', () => {
  test('every selector and matching type of the leaf matches', () => {
    for (const s of [0, 1])
      for (const m of [0, 1, 2]) {
        const v = daneVerify([leaf.der], [rec(3, s, m, leaf)], NAMES, now());
        assert.ok(v.ok, `3 ${s} ${m}: ${JSON.stringify(v)}`);
        assert.equal(v.ok && v.how, `DANE-EE ${s} ${m}`);
      }
  });

  test('ignores the names and the dates (RFC 7672 §3.1.1)', () => {
    const v = daneVerify([leaf.der], [rec(3, 1, 1, leaf)], ['elsewhere.test'], now() + 365 * DAY);
    assert.ok(v.ok);
  });

  test('another key does not match, and PKIX usages 0/1 of the very leaf are not usable', () => {
    const v = daneVerify([foreignLeaf.der], [rec(3, 1, 1, leaf)], NAMES, now());
    assert.equal(v.ok, false);
    assert.match(!v.ok ? v.why : '', /matches none of the TLSA records \(3 1 1 /);
    const pkix = daneVerify([leaf.der], [rec(1, 1, 1, leaf), rec(0, 0, 1, root)], NAMES, now());
    assert.deepEqual(pkix, { ok: false, why: 'no usable TLSA records' });
  });

  test('a TLSA record of the leaf under usage 2 does not stand for DANE-EE', () => {
    const v = daneVerify([leaf.der, inter.der, root.der], [rec(2, 1, 1, leaf)], NAMES, now());
    assert.equal(v.ok, false);
  });
});

describe('DANE-TA(2)', () => {
  test('2 0 1 of the root, the whole chain sent: matches, with the name', () => {
    const v = daneVerify([leaf.der, inter.der, root.der], [rec(2, 0, 1, root)], NAMES, now());
    assert.ok(v.ok, JSON.stringify(v));
    assert.equal(v.ok && v.depth, 2);
    assert.equal(v.ok && v.how, 'DANE-TA 0 1');
  });

  test('2 1 1 of the intermediate: the path ends there', () => {
    const v = daneVerify([leaf.der, inter.der], [rec(2, 1, 1, inter)], NAMES, now());
    assert.ok(v.ok && v.depth === 1, JSON.stringify(v));
  });

  test('a digest of a root the server did not send cannot be found; the whole root (2 0 0) or its key (2 1 0) can', () => {
    assert.equal(daneVerify([leaf.der, inter.der], [rec(2, 0, 1, root)], NAMES, now()).ok, false);
    const full = daneVerify([leaf.der, inter.der], [rec(2, 0, 0, root)], NAMES, now());
    assert.ok(full.ok && full.depth === 2, JSON.stringify(full));
    const key = daneVerify([leaf.der, inter.der], [rec(2, 1, 0, root)], NAMES, now());
    assert.ok(key.ok && key.depth === 2, JSON.stringify(key));
  });

  test('the leaf must be valid for a reference name', () => {
    const v = daneVerify([leaf.der, inter.der, root.der], [rec(2, 0, 1, root)], ['mx2.dst.test'], now());
    assert.equal(v.ok, false);
    assert.match(!v.ok ? v.why : '', /not valid for mx2\.dst\.test/);
    // Any of the names (the MX host, its CNAME expansion) will do.
    assert.ok(
      daneVerify(
        [leaf.der, inter.der, root.der],
        [rec(2, 0, 1, root)],
        ['mx2.dst.test', 'mx1.dst.test'],
        now(),
      ).ok,
    );
  });

  test('dates of the chain below the anchor are checked', () => {
    const v = daneVerify([leaf.der, inter.der, root.der], [rec(2, 0, 1, root)], NAMES, now() + 365 * DAY);
    assert.equal(v.ok, false);
    assert.match(!v.ok ? v.why : '', /expired/);
  });

  test('a leaf of another CA sent with the anchor is a broken chain', () => {
    const v = daneVerify([foreignLeaf.der, inter.der, root.der], [rec(2, 0, 1, root)], NAMES, now());
    assert.equal(v.ok, false);
    assert.match(!v.ok ? v.why : '', /broken/);
  });

  test('a wildcard only as the whole leftmost label (RFC 7672 §3.2.3)', () => {
    assert.ok(daneVerify([wildLeaf.der, root.der], [rec(2, 0, 1, root)], NAMES, now()).ok);
    assert.equal(
      daneVerify([wildLeaf.der, root.der], [rec(2, 0, 1, root)], ['a.mx1.dst.test'], now()).ok,
      false,
    );
    assert.equal(daneVerify([partialLeaf.der, root.der], [rec(2, 0, 1, root)], NAMES, now()).ok, false);
  });

  test('an empty or unparsable chain matches nothing', () => {
    assert.equal(daneVerify([], [rec(3, 1, 1, leaf)], NAMES, now()).ok, false);
    assert.equal(
      daneVerify([Buffer.from('not a certificate')], [rec(3, 1, 1, leaf)], NAMES, now()).ok,
      false,
    );
  });
});

describe('property: only the right data matches', () => {
  test('random records never match; a record made from the chain always does (seeded)', () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    const random = prng(seed);
    const pick = (n: number) => Math.floor(random() * n);
    const chain = [leaf.der, inter.der, root.der];
    const certs = [leaf, inter, root];
    for (let i = 0; i < 300; i++) {
      const usage = pick(4);
      const selector = pick(2);
      const matching = pick(3);
      const len = matching === 1 ? 32 : matching === 2 ? 64 : 1 + pick(200);
      const data = Buffer.from(Array.from({ length: len }, () => pick(256)));
      const v = daneVerify(chain, [{ usage, selector, matching, data }], NAMES, now());
      assert.equal(v.ok, false, `seed ${seed}: random ${usage} ${selector} ${matching} matched`);
      // The genuine record: EE of the leaf, TA of a certificate above it.
      const depth = usage === 3 ? 0 : 1 + pick(2);
      const real = rec(usage, selector, matching, certs[depth]!);
      const w = daneVerify(chain, [{ usage, selector, matching, data }, real], NAMES, now());
      assert.equal(w.ok, usage >= 2, `seed ${seed}: ${usage} ${selector} ${matching} at depth ${depth}`);
      if (w.ok) assert.equal(w.depth, depth);
    }
  });
});
