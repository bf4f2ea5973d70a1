// Tests of logging: JSON shape, levels, child bindings, redaction of credentials, the pretty format, exit flush.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MtaError } from './errors.js';
import {
  createLogger,
  formatPretty,
  isSecretKey,
  nullLogger,
  redactFields,
  redactSmtpCommand,
} from './log.js';

function capture(format: 'json' | 'pretty', level: 'info' | 'debug' = 'info') {
  const lines: string[] = [];
  const log = createLogger({ format, level, destination: { write: (s: string) => lines.push(s) } });
  return { log, lines };
}

describe('json logging', () => {
  test('one JSON object per line with level label, time, fields and message', () => {
    const { log, lines } = capture('json');
    log.info({ remote: '192.0.2.1', count: 3 }, 'accepted');
    assert.equal(lines.length, 1);
    assert.ok(lines[0]!.endsWith('\n'));
    const o = JSON.parse(lines[0]!);
    assert.equal(o.level, 'info');
    assert.equal(typeof o.time, 'number');
    assert.equal(o.remote, '192.0.2.1');
    assert.equal(o.count, 3);
    assert.equal(o.msg, 'accepted');
  });

  test('levels below the threshold are dropped and isLevelEnabled says so', () => {
    const { log, lines } = capture('json', 'info');
    log.debug({}, 'hidden');
    log.warn({}, 'shown');
    assert.equal(lines.length, 1);
    assert.equal(log.isLevelEnabled('debug'), false);
    assert.equal(log.isLevelEnabled('error'), true);
  });

  test('a child carries its bindings on every line', () => {
    const { log, lines } = capture('json');
    const child = log.child({ component: 'smtp', session: 'abc' });
    child.error({ code: 'X' }, 'oops');
    const o = JSON.parse(lines[0]!);
    assert.equal(o.component, 'smtp');
    assert.equal(o.session, 'abc');
    assert.equal(o.level, 'error');
  });

  test('errors are serialised with message, code and stack', () => {
    const { log, lines } = capture('json');
    log.error({ err: new MtaError('QUEUE_FULL', 'transient', 'disk full') }, 'write failed');
    const o = JSON.parse(lines[0]!);
    assert.equal(o.err.message, 'disk full');
    assert.equal(o.err.code, 'QUEUE_FULL');
    assert.match(o.err.stack, /MtaError: disk full/);
  });
});

describe('redaction', () => {
  for (const format of ['json', 'pretty'] as const) {
    test(`credentials never reach ${format} output, at top level, nested, or in child bindings`, () => {
      const { log, lines } = capture(format);
      log.info({ password: 'hunter2', user: 'alice', auth: { secret: 's3cr3t', token: 'tkn-1' } }, 'auth');
      log.child({ auth_password: 'relaypw' }).warn({ route: { auth_password: 'relaypw2' } }, 'route');
      log.info({ authorization: 'Bearer abc.def' }, 'http');
      const out = lines.join('');
      for (const secret of ['hunter2', 's3cr3t', 'tkn-1', 'relaypw', 'relaypw2', 'Bearer abc.def']) {
        assert.ok(!out.includes(secret), `${secret} leaked into:\n${out}`);
      }
      assert.ok(out.includes('alice'), 'non-secret fields stay');
      assert.ok(out.includes('[redacted]'));
    });
  }

  test('every secret-looking key is redacted, in any case and inside arrays', () => {
    const keys = [
      'password',
      'Password',
      'passwd',
      'pass',
      'secret',
      'token',
      'token_file',
      'auth_password',
      'authPassword',
      'adminToken',
      'authorization',
      'credentials',
      'api_key',
      'apiKey',
      'cookie',
    ];
    for (const k of keys) assert.equal(isSecretKey(k), true, k);
    for (const k of ['passed', 'user', 'host', 'msgid', 'recipients']) assert.equal(isSecretKey(k), false, k);
    const { log, lines } = capture('json');
    const fields = Object.fromEntries(keys.map((k) => [k, `value-of-${k}`]));
    log.info(
      {
        ...fields,
        nested: fields,
        list: [{ name: 'u', password: 'value-of-list' }],
        a: { b: { c: fields } },
      },
      'all',
    );
    assert.ok(!lines[0]!.includes('value-of-'), lines[0]);
  });

  test('redactFields returns the same object when nothing is secret, and never mutates', () => {
    const clean = { a: 1, b: { c: 'x' }, d: [1, 2] };
    assert.equal(redactFields(clean), clean);
    const dirty = { a: 1, b: { password: 'p' } };
    const out = redactFields(dirty);
    assert.deepEqual(out, { a: 1, b: { password: '[redacted]' } });
    assert.equal(dirty.b.password, 'p');
  });

  test('AUTH command lines keep the mechanism and lose the credentials', () => {
    assert.equal(redactSmtpCommand('AUTH PLAIN AGFsaWNlAHNlY3JldA=='), 'AUTH PLAIN [redacted]');
    assert.equal(redactSmtpCommand('auth login YWxpY2U='), 'auth login [redacted]');
    assert.equal(redactSmtpCommand('AUTH CRAM-MD5'), 'AUTH CRAM-MD5');
    assert.equal(redactSmtpCommand('MAIL FROM:<a@b>'), 'MAIL FROM:<a@b>');
  });
});

describe('pretty format', () => {
  test('is one readable line: time, level, message, key=value', () => {
    const { log, lines } = capture('pretty');
    log
      .child({ component: 'smtp' })
      .info({ remote: '192.0.2.1', note: 'two words', n: 5, ok: true }, 'accepted');
    assert.equal(lines.length, 1);
    assert.match(
      lines[0]!,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}accepted component=smtp remote=192\.0\.2\.1 note="two words" n=5 ok=true\n$/,
    );
    assert.ok(!lines[0]!.includes('pid='), 'no pid noise in pretty lines');
  });

  test('errors print their message inline and the stack indented below', () => {
    const { log, lines } = capture('pretty');
    log.error({ err: new MtaError('E_X', 'permanent', 'it broke') }, 'failed');
    const [first, ...rest] = lines[0]!.split('\n');
    assert.match(first!, /ERROR failed err="it broke" code=E_X/);
    assert.ok(
      rest.filter((l) => l !== '').every((l) => l.startsWith('    at ')),
      lines[0],
    );
  });

  test('nested objects are printed as JSON, and non-JSON input passes through', () => {
    assert.match(
      formatPretty('{"level":"warn","time":0,"msg":"m","o":{"a":1}}'),
      /^1970-01-01T00:00:00\.000Z WARN {2}m o=\{"a":1\}\n$/,
    );
    assert.equal(formatPretty('plain text'), 'plain text\n');
  });
});

/** Runs `body` in a child process after `log` was made on a file; returns its status, stderr, lines. */
function inChild(body: string): { status: number | null; stderr: string; lines: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'logmta-log-'));
  try {
    const file = join(dir, 'out.log');
    const mod = fileURLToPath(new URL('./log.js', import.meta.url));
    const script = `
      import { createLogger } from ${JSON.stringify(mod)};
      const log = createLogger({ format: 'json', level: 'info', destination: ${JSON.stringify(file)} });
      ${body}`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr, lines: readFileSync(file, 'utf8').trim().split('\n') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the default json destination writes asynchronously and is flushed at exit', () => {
  const r = inChild(`for (let i = 0; i < 1000; i++) log.info({ i }, 'line');
      process.exit(0);`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.lines.length, 1000);
  assert.equal(JSON.parse(r.lines[999]!).i, 999);
});

test('buffered lines are written when the process dies of an uncaught exception', () => {
  const r = inChild(`for (let i = 0; i < 10; i++) log.info({ i }, 'line');
      setImmediate(() => { throw new Error('boom'); });`);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /boom/);
  assert.equal(r.lines.length, 10);
});

test('a buffered line reaches its file within the flush interval, with nothing logged after it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'logmta-log-'));
  try {
    const file = join(dir, 'out.log');
    const log = createLogger({ format: 'json', level: 'info', destination: file });
    log.info({ n: 1 }, 'alone');
    // Far below the 32 KiB that start a write: only the periodic flush writes it.
    const deadline = Date.now() + 10_000;
    while (!readFileSync(file, 'utf8').includes('"alone"')) {
      assert.ok(Date.now() < deadline, 'the line was never written');
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).n, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('nullLogger accepts every call and writes nothing', () => {
  nullLogger.info({ a: 1 }, 'x');
  nullLogger.child({ b: 2 }).error({}, 'y');
  assert.equal(nullLogger.child({}), nullLogger);
  assert.equal(nullLogger.isLevelEnabled('error'), false);
});
