// Lane names: every domain the configuration accepts names a held lane that fits in NAME_MAX and
// parses back to the same lane (property-tested over the shared domain grammar), and a queue
// holds mail for such domains across a crash. Before the fix `mail._branch.example` made
// parseLaneName throw and a 251+ character domain made mkdir fail (ENAMETOOLONG).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseDomain } from '../../config/values.js';
import { MAX_DOMAIN_LENGTH } from '../../util/domain.js';
import { Queue } from '../queue.js';
import { heldLaneName, NAME_MAX, parseLaneName, retryLaneName } from './segment.js';
import { FakeClock } from '../../../test/support/clock.js';
import { msg } from '../../../test/support/queue.js';
import { MemQueueFs } from '../../../test/support/memfs.js';

const alnum = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789ABCZ'.split(''));
const inner = fc.constantFrom(...'abcxyz0189-'.split(''));
/** A label of the grammar: letters/digits with inner hyphens, or an underscore label. */
const label = fc.oneof(
  fc.tuple(alnum, fc.array(inner, { maxLength: 61 }), alnum).map(([a, m, z]) => a + m.join('') + z),
  alnum,
  fc.array(inner, { minLength: 1, maxLength: 62 }).map((m) => `_${m.join('')}`),
);
/** Domains of every length up to the limit, long ones included, sometimes with a trailing dot. */
const domain = fc
  .tuple(fc.array(label, { minLength: 1, maxLength: 8 }), fc.boolean())
  .map(([ls, dot]) => ls.join('.') + (dot ? '.' : ''));
const longDomain = fc
  .array(fc.constantFrom('a', 'b', '0', '-'), { minLength: 230, maxLength: 260 })
  .map((cs) => {
    const s = cs.join('');
    // Labels of at most 63 characters, not starting or ending with a hyphen.
    return (s.match(/.{1,60}/g) ?? []).map((l) => `x${l}y`).join('.');
  });

function configAccepts(s: string): string | undefined {
  try {
    return parseDomain(s);
  } catch {
    return undefined;
  }
}

describe('lane names', () => {
  test('every domain the config accepts has a held lane name within NAME_MAX that parses back', () => {
    fc.assert(
      fc.property(fc.oneof(domain, longDomain, fc.string()), (s) => {
        const d = configAccepts(s);
        if (d === undefined) return;
        const name = heldLaneName(d);
        assert.ok(Buffer.byteLength(name) <= NAME_MAX, `${name.length} bytes`);
        assert.deepEqual(parseLaneName(name), { name, kind: 'held', domain: d });
      }),
      { numRuns: 3000 },
    );
  });

  test('each lane has one name: only names the encoders make parse', () => {
    fc.assert(
      fc.property(fc.oneof(domain, longDomain), fc.constantFrom('held-', '@', 'retry-', ''), (d, prefix) => {
        const name = prefix + d;
        const p = parseLaneName(name);
        if (p === undefined) return;
        if (p.kind === 'held') assert.equal(heldLaneName(p.domain!), name);
        if (p.kind === 'retry') assert.equal(retryLaneName(p.delay!), name);
      }),
      { numRuns: 3000 },
    );
  });

  test('the cases that failed: an underscore label and the longest domains; format 1 names still read', () => {
    assert.deepEqual(parseLaneName('held-mail._branch.example'), {
      name: 'held-mail._branch.example',
      kind: 'held',
      domain: 'mail._branch.example',
    });
    const longest = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    assert.equal(longest.length, MAX_DOMAIN_LENGTH);
    assert.equal(configAccepts(longest), longest);
    assert.equal(heldLaneName(longest), `@${longest}`);
    assert.equal(parseLaneName(`@${longest}`)?.domain, longest);
    assert.equal(parseLaneName('@example.org'), undefined, 'a short domain has only its held- name');
    assert.equal(heldLaneName('Example.ORG'), 'held-example.org');
    assert.throws(() => heldLaneName('not a domain'), RangeError);
  });

  test('a queue holds mail for those domains, and recovery finds it again', async () => {
    const fs = new MemQueueFs();
    const clock = new FakeClock();
    const longest = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    const q = await Queue.open({ dir: '/q', fs, clock });
    for (const d of ['mail._branch.example', longest])
      await q.accept({
        data: msg(d.length),
        sender: 'a@x.test',
        recipients: [{ address: `u@${d}` }],
        destinations: [{ kind: 'held', domain: d }],
      });
    assert.equal(q.poisoned, undefined);
    fs.crash();
    const q2 = await Queue.open({ dir: '/q', fs, clock });
    assert.equal(q2.heldCount('mail._branch.example'), 1);
    assert.equal(q2.heldCount(longest), 1);
    assert.deepEqual(q2.heldDomains().sort(), ['mail._branch.example', longest].sort());
  });
});
