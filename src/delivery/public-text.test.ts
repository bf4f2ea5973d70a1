import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { withoutPaths } from './public-text.js';

describe('withoutPaths', () => {
  test('an errno message loses its path', () => {
    assert.equal(
      withoutPaths("ENOENT: no such file or directory, open '/var/lib/logmta/queue/new/000001.log'"),
      "ENOENT: no such file or directory, open '[path]'",
    );
    assert.equal(withoutPaths('delivered to /var/mail/alice'), 'delivered to [path]');
    assert.equal(withoutPaths('/tmp/x is not a directory'), '[path] is not a directory');
  });

  test('URLs, MIME types and plain replies are kept', () => {
    const s = '550 5.7.1 rejected, see https://example.org/policy/a and text/plain; 4.2.0 a/b';
    assert.equal(withoutPaths(s), s);
  });
});
