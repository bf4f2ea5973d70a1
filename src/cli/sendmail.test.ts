import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MtaError } from '../errors.js';
import { parseSendmailArgs, sendmailExitCode } from './sendmail.js';

describe('sendmail command line', () => {
  test('flags with attached or separate values, -oi, ignored options, comma lists', () => {
    const o = parseSendmailArgs([
      '-t',
      '-oi',
      '-odb',
      '-fme@x',
      '-F',
      'Cron',
      '-N',
      'never',
      'a@x,b@y',
      'c@z',
    ]);
    assert.equal(o.extract, true);
    assert.equal(o.ignoreDots, true);
    assert.equal(o.sender, 'me@x');
    assert.equal(o.fullName, 'Cron');
    assert.deepEqual(o.recipients, ['a@x', 'b@y', 'c@z']);
  });

  test('-f with a separate value, -i, and logmta options', () => {
    const o = parseSendmailArgs(['-i', '-f', '<>', '--config', '/etc/l.toml', '--', '-odd@x']);
    assert.equal(o.ignoreDots, true);
    assert.equal(o.sender, '<>');
    assert.equal(o.config, '/etc/l.toml');
    assert.deepEqual(o.recipients, ['-odd@x']);
  });

  test('unsupported modes and unknown flags are usage errors', () => {
    assert.throws(() => parseSendmailArgs(['-bs']), /only -bm/);
    assert.throws(() => parseSendmailArgs(['-qSsite']), /only -q, -qRSITE/);
    assert.throws(() => parseSendmailArgs(['-x']), /unknown option/);
    assert.throws(() => parseSendmailArgs(['-f']), /needs a value/);
    assert.throws(() => parseSendmailArgs(['-q', 'a@x']), /no recipients with -q/);
  });

  test('the queue commands: -q flushes, -qRSITE flushes a site, -q<interval> does nothing, -bp lists', () => {
    assert.equal(parseSendmailArgs(['-q']).mode, 'flush');
    const r = parseSendmailArgs(['-qRExample.NET', '--config', '/etc/l.toml']);
    assert.equal(r.mode, 'flush');
    assert.equal(r.site, 'example.net');
    assert.equal(r.config, '/etc/l.toml');
    assert.equal(parseSendmailArgs(['-qR', 'b.test']).site, 'b.test');
    assert.equal(parseSendmailArgs(['-q30m']).mode, 'none');
    assert.equal(parseSendmailArgs(['-bp']).mode, 'list');
    assert.equal(parseSendmailArgs(['a@x']).mode, 'send');
  });

  test('exit codes follow sysexits', () => {
    const e = (code: string, kind: 'transient' | 'permanent' = 'permanent') => new MtaError(code, kind, 'x');
    assert.equal(sendmailExitCode(e('ADMIN_UNREACHABLE', 'transient')), 75);
    assert.equal(sendmailExitCode(e('ADMIN_FORBIDDEN')), 77);
    assert.equal(sendmailExitCode(e('INJECT_RECIPIENT_REFUSED')), 67);
    assert.equal(sendmailExitCode(e('INJECT_RECIPIENT_REFUSED', 'transient')), 75);
    assert.equal(sendmailExitCode(e('INJECT_BAD_SENDER')), 65);
    assert.equal(sendmailExitCode(e('QUEUE_POISONED', 'transient')), 75);
    assert.equal(sendmailExitCode(e('SOMETHING')), 69);
  });
});
