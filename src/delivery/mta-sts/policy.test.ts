import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { MAX_AGE_LIMIT, mxMatches, parseStsPolicy, parseStsRecord, policyAllows } from './policy.js';

const id = (records: string[][]) => {
  const r = parseStsRecord(records);
  return r.ok ? r.value.id : undefined;
};

describe('MTA-STS TXT record (RFC 8461 §3.1)', () => {
  test('v=STSv1 with an id gives the id; spaces around fields and a trailing ";" are allowed', () => {
    assert.equal(id([['v=STSv1; id=20160831085700Z;']]), '20160831085700Z');
    assert.equal(id([['v=STSv1;id=abc']]), 'abc');
    assert.equal(id([['v=STSv1 ;  id = x1 ; ']]), 'x1');
    // Records not beginning with "v=STSv1" are discarded before parsing (§3.1).
    assert.equal(id([['v = STSv1; id=x1']]), undefined);
  });
  test('the character-strings of one record are joined', () => {
    assert.equal(id([['v=STSv1; ', 'id=abc']]), 'abc');
  });
  test('records of other protocols are ignored; two STS records are no policy', () => {
    assert.equal(id([['v=spf1 -all'], ['v=STSv1; id=a']]), 'a');
    assert.equal(id([['v=STSv1; id=a'], ['v=STSv1; id=b']]), undefined);
  });
  test('no id, a bad id, a repeated id, another version or junk fields are no policy', () => {
    for (const r of [
      'v=STSv1',
      'v=STSv1;',
      'v=STSv1; id=',
      'v=STSv1; id=ab-c',
      `v=STSv1; id=${'a'.repeat(33)}`,
      'v=STSv1; id=a; id=b',
      'v=STSv10; id=a',
      'v=STSv1; id=a; junk',
      'v=STSv1; id=a; x=a=b',
    ])
      assert.equal(id([[r]]), undefined, r);
  });
  test('extension fields are ignored', () => {
    assert.equal(id([['v=STSv1; id=a; ext_1=val.ue']]), 'a');
  });
  test('any TXT answer parses without throwing', () => {
    fc.assert(
      fc.property(fc.array(fc.array(fc.string(), { maxLength: 3 }), { maxLength: 3 }), (rs) => {
        const r = parseStsRecord(rs);
        return r.ok ? /^[A-Za-z0-9]{1,32}$/.test(r.value.id) : r.why.length > 0;
      }),
    );
  });
  test('an id round-trips through a record', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9]{1,32}$/), fc.boolean(), (v, semi) => {
        return id([[`v=STSv1; id=${v}${semi ? ';' : ''}`]]) === v;
      }),
    );
  });
});

const policy = (text: string) => {
  const r = parseStsPolicy(text);
  return r.ok ? r.value : r.why;
};

describe('MTA-STS policy file (RFC 8461 §3.2)', () => {
  test("the RFC's example parses, with CRLF or LF lines", () => {
    const lines = [
      'version: STSv1',
      'mode: enforce',
      'mx: mail.example.com',
      'mx: *.example.net',
      'mx: backupmx.example.com',
      'max_age: 604800',
    ];
    const want = {
      mode: 'enforce',
      mx: ['mail.example.com', '*.example.net', 'backupmx.example.com'],
      maxAge: 604800,
    };
    assert.deepEqual(policy(`${lines.join('\r\n')}\r\n`), want);
    assert.deepEqual(policy(lines.join('\n')), want);
  });
  test('mx patterns are lower-cased and lose a trailing dot', () => {
    const p = policy('version: STSv1\nmode: testing\nmx: MX.Example.COM.\nmax_age: 86400\n');
    assert.deepEqual(typeof p === 'object' && p.mx, ['mx.example.com']);
  });
  test('mode none needs no mx; enforce and testing do', () => {
    assert.equal(typeof policy('version: STSv1\nmode: none\nmax_age: 86400'), 'object');
    assert.match(String(policy('version: STSv1\nmode: enforce\nmax_age: 86400')), /without any mx/);
  });
  test('a missing or wrong version, mode or max_age is no policy', () => {
    for (const [text, why] of [
      ['mode: enforce\nmx: a.b\nmax_age: 1', /no version/],
      ['version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1', /not STSv1/],
      ['version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1', /unknown/],
      ['version: STSv1\nmode: enforce\nmx: a.b', /no max_age/],
      ['version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1', /digits/],
      ['version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 12345678901', /digits/],
    ] as const)
      assert.match(String(policy(text)), why, text);
  });
  test('max_age above a year is capped at 31557600', () => {
    const p = policy('version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 9999999999');
    assert.equal(typeof p === 'object' && p.maxAge, MAX_AGE_LIMIT);
  });
  test('unknown fields are ignored; of a repeated field other than mx the first counts', () => {
    const p = policy(
      'version: STSv1\nmode: testing\nmode: enforce\nfoo: bar baz\nmx: a.b\nmax_age: 10\nmax_age: 20',
    );
    assert.deepEqual(p, { mode: 'testing', mx: ['a.b'], maxAge: 10 });
  });
  test('bad mx patterns and lines that are no field make the policy invalid', () => {
    for (const bad of ['mx: *', 'mx: a.*.b', 'mx: *.*.b', 'mx: -a.b', 'mx: a b', 'mx: ', 'just text', ': x'])
      assert.equal(
        typeof policy(`version: STSv1\nmode: enforce\nmx: ok.b\nmax_age: 10\n${bad}`),
        'string',
        bad,
      );
  });
  test('any text parses without throwing, and a parsed policy keeps the invariants', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        const r = parseStsPolicy(s);
        return (
          !r.ok || (r.value.maxAge <= MAX_AGE_LIMIT && (r.value.mode === 'none' || r.value.mx.length > 0))
        );
      }),
    );
  });
  test('a policy written from parts parses back to them', () => {
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
    const host = fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.'));
    const pattern = fc.tuple(fc.boolean(), host).map(([w, h]) => (w ? `*.${h}` : h));
    fc.assert(
      fc.property(
        fc.constantFrom('enforce', 'testing'),
        fc.array(pattern, { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: MAX_AGE_LIMIT }),
        fc.constantFrom('\n', '\r\n'),
        (mode, mx, maxAge, eol) => {
          const lines = [
            'version: STSv1',
            `mode: ${mode}`,
            ...mx.map((m) => `mx: ${m}`),
            `max_age: ${maxAge}`,
          ];
          assert.deepEqual(policy(lines.join(eol) + eol), { mode, mx, maxAge });
        },
      ),
    );
  });
});

describe('MX host matching (RFC 8461 §4.1)', () => {
  test('an exact pattern matches the name alone, in any case, with or without a trailing dot', () => {
    assert.ok(mxMatches('mx.example.com', 'MX.example.com.'));
    assert.ok(!mxMatches('mx.example.com', 'mx2.example.com'));
    assert.ok(!mxMatches('mx.example.com', 'a.mx.example.com'));
  });
  test('"*.example.com" matches one leftmost label more, not two and not the bare domain', () => {
    assert.ok(mxMatches('*.example.com', 'mx1.example.com'));
    assert.ok(!mxMatches('*.example.com', 'a.b.example.com'));
    assert.ok(!mxMatches('*.example.com', 'example.com'));
    assert.ok(!mxMatches('*.example.com', 'mx1.example.com.evil'));
    assert.ok(!mxMatches('*.example.com', '.example.com'));
  });
  test('a wildcard matches exactly the hosts with one label before its base', () => {
    const label = fc.stringMatching(/^[a-z0-9]{1,8}$/);
    fc.assert(
      fc.property(
        fc.array(label, { minLength: 1, maxLength: 4 }),
        fc.array(label, { minLength: 1, maxLength: 3 }),
        (pre, base) => {
          const host = [...pre, ...base].join('.');
          return mxMatches(`*.${base.join('.')}`, host) === (pre.length === 1);
        },
      ),
    );
  });
  test('policyAllows: any pattern of the policy', () => {
    const p = { mode: 'enforce' as const, mx: ['a.example', '*.b.example'], maxAge: 1 };
    assert.ok(policyAllows(p, 'a.example'));
    assert.ok(policyAllows(p, 'x.b.example'));
    assert.ok(!policyAllows(p, 'c.example'));
  });
});
