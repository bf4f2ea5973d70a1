// A real, independent MIME parser for tests: Python's email package compares a message with its
// 7-bit conversion — the same tree of content types, equal decoded payloads, header fields kept,
// no parser defects in the converted form, all 7-bit with lines of at most 998 octets. Test-only.

import { spawnSync } from 'node:child_process';

export function hasPythonEmail(): boolean {
  return spawnSync('python3', ['-c', 'import email'], { stdio: 'ignore' }).status === 0;
}

/**
 * Checks the pairs `<dir>/<i>.in` (original) and `<dir>/<i>.out` (converted) for i < n; returns
 * how many were checked, or throws with Python's complaint.
 */
export function pythonSameMime(dir: string, n: number): number {
  const r = spawnSync('python3', ['-c', PY, dir, String(n)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 found a difference:\n${r.stderr}${r.stdout}`);
  return Number(/^checked (\d+)/.exec(r.stdout)?.[1] ?? -1);
}

// For each pair: both parse without defects in the converted one, the same tree of content types,
// and equal decoded payloads (line ends compared as LF: Python's quoted-printable decoder writes
// LF for a hard break); the converted form is all 7-bit with lines of at most 998 octets.
const PY = `
import email, sys
from email import policy
d, n = sys.argv[1], int(sys.argv[2])
def leaves(m, out):
    if m.is_multipart():
        out.append(('multi', m.get_content_type(), len(m.get_payload())))
        for p in m.get_payload():
            leaves(p, out)
    else:
        p = m.get_payload(decode=True) or b''
        out.append(('leaf', m.get_content_type(), p.replace(b'\\r\\n', b'\\n')))
    return out
for i in range(n):
    a = open(f'{d}/{i}.in', 'rb').read()
    b = open(f'{d}/{i}.out', 'rb').read()
    assert all(c < 128 for c in b), f'{i}: 8-bit byte in output'
    assert all(len(l) <= 998 for l in b.split(b'\\r\\n')), f'{i}: long line'
    ma = email.message_from_bytes(a, policy=policy.compat32)
    mb = email.message_from_bytes(b, policy=policy.compat32)
    defects = [x for p in mb.walk() for x in p.defects]
    assert not defects, f'{i}: defects {defects}'
    la, lb = leaves(ma, []), leaves(mb, [])
    assert la == lb, f'{i}: {la!r} != {lb!r}'
    for k in ma.keys():
        if k.lower() != 'content-transfer-encoding':
            assert ma.get_all(k) == mb.get_all(k), f'{i}: header {k} changed'
print(f'checked {n}')
`;
