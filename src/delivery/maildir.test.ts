import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import type { Clock } from '../util/clock.js';
import { MaildirWriter, mapFsError } from './maildir.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'logmta-maildir-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(root, `md${n++}`);
const clock: Clock = { now: () => 1_700_000_000_123, setTimer: () => () => {} };
const msg = [Buffer.from('Subject: hi\r\n\r\nline one\r'), Buffer.from('\nline two\r\n')];

describe('MaildirWriter', () => {
  test('creates cur/new/tmp with mode 0700 and delivers a complete file into new/', async () => {
    const dir = fresh();
    const w = new MaildirWriter({ clock, hostname: 'host', pid: 42 });
    const file = await w.deliver(msg, { maildirPath: dir, returnPath: 'a@x.test', deliveredTo: 'b@y.test' });
    for (const sub of ['cur', 'new', 'tmp']) {
      const st = fs.statSync(path.join(dir, sub));
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o777, 0o700);
    }
    assert.equal(path.dirname(file), path.join(dir, 'new'));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
    assert.equal(
      fs.readFileSync(file, 'utf8'),
      'Return-Path: <a@x.test>\nDelivered-To: b@y.test\nSubject: hi\n\nline one\nline two\n',
    );
  });

  test('names files per the Maildir spec and never repeats a name', async () => {
    const dir = fresh();
    const w = new MaildirWriter({ clock, hostname: 'h/o:st', pid: 7 });
    const names = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const f = await w.deliver([Buffer.from('x\r\n')], {
        maildirPath: dir,
        returnPath: '',
        deliveredTo: 'b@y',
      });
      names.add(path.basename(f));
    }
    assert.equal(names.size, 20);
    for (const name of names) assert.match(name, /^1700000000\.M\d+P7Q\d+\.h\\057o\\072st$/);
  });

  test('keeps CRLF when asked and writes <> for the null sender', async () => {
    const dir = fresh();
    const w = new MaildirWriter({ clock, hostname: 'h', lineEnding: 'crlf' });
    const f = await w.deliver(msg, { maildirPath: dir, returnPath: '', deliveredTo: 'b@y' });
    assert.equal(
      fs.readFileSync(f, 'utf8'),
      'Return-Path: <>\r\nDelivered-To: b@y\r\nSubject: hi\r\n\r\nline one\r\nline two\r\n',
    );
  });

  test('a maildir path that is a file fails permanently', async () => {
    const file = fresh();
    fs.writeFileSync(file, 'not a dir');
    const w = new MaildirWriter({ clock, hostname: 'h' });
    await assert.rejects(w.deliver(msg, { maildirPath: file, returnPath: 'a@x', deliveredTo: 'b@y' }), {
      kind: 'permanent',
      code: 'MAILDIR_NOT_DIR',
    });
    await assert.rejects(
      w.deliver(msg, { maildirPath: path.join(file, 'sub'), returnPath: 'a@x', deliveredTo: 'b@y' }),
      { kind: 'permanent' },
    );
  });

  test('an unwritable maildir fails transiently and leaves nothing in new/', {
    skip: process.getuid?.() === 0,
  }, async () => {
    const dir = fresh();
    const w = new MaildirWriter({ clock, hostname: 'h' });
    await w.deliver(msg, { maildirPath: dir, returnPath: 'a@x', deliveredTo: 'b@y' });
    fs.chmodSync(path.join(dir, 'tmp'), 0o500);
    try {
      await assert.rejects(w.deliver(msg, { maildirPath: dir, returnPath: 'a@x', deliveredTo: 'b@y' }), {
        kind: 'transient',
        smtp: { code: 451, enhanced: '4.3.0' },
      });
      assert.equal(fs.readdirSync(path.join(dir, 'new')).length, 1);
    } finally {
      fs.chmodSync(path.join(dir, 'tmp'), 0o700);
    }
  });

  test('maps full disks and quotas to transient 452 and permissions to transient 451', () => {
    const err = (code: string) => Object.assign(new Error(code), { code });
    assert.deepEqual(mapFsError(err('EDQUOT'), 'w').smtp, { code: 452, enhanced: '4.2.2' });
    assert.deepEqual(mapFsError(err('ENOSPC'), 'w').smtp, { code: 452, enhanced: '4.3.1' });
    assert.equal(mapFsError(err('ENOSPC'), 'w').kind, 'transient');
    assert.equal(mapFsError(err('EACCES'), 'w').kind, 'transient');
    assert.equal(mapFsError(err('EIO'), 'w').kind, 'transient');
    assert.equal(mapFsError(err('ENOTDIR'), 'w').kind, 'permanent');
  });
});
