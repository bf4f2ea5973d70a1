// `logmta sendmail` as scripts, cron, PHP's mail(), mutt and `git send-email` call it, against a
// real `logmta serve`, judged by what the destination receives: a lone dot with -i and a body
// without a final newline arrive intact; Bcc recipients get the mail but never see the header;
// an mbox "From " line (git format-patch files, formail output) is not taken for the body;
// a message far over smtp.max_message_size exits 65 (EX_DATAERR) as one just over it does, and a
// runaway pipe of hundreds of MB is cut off once the limit is passed, in little memory.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { LOGMTA_BIN, runTool } from '../support/daemon.js';
import { type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();

async function world(): Promise<{ s: Stage; host: CustomerHost }> {
  const host = await scene.customer();
  await host.up();
  const s = await scene.stage({
    toml: `
[smtp]
max_message_size = "64KiB"
[[route]]
domain = "customer.test"
host = "127.0.0.1:${host.port}"
`,
  });
  return { s, host };
}

/** `logmta sendmail ARGS` with `input` on stdin. */
function sendmail(s: Stage, args: string[], input: string | Buffer) {
  return runTool(process.execPath, [LOGMTA_BIN, 'sendmail', '--config', s.daemon.configFile!, ...args], {
    input,
  });
}

describe('logmta sendmail, judged by what arrives', () => {
  test('-t -i (PHP mail()): a lone dot, bare LF and no final newline arrive intact; Bcc recipients get it without the header', async () => {
    const { s, host } = await world();
    const r = await sendmail(
      s,
      ['-t', '-i', '-f', 'web@sender.test'],
      'To: a@customer.test\nBcc: b@customer.test,\n  c@customer.test\nSubject: php\n\nline\n.\n..two\nlast',
    );
    assert.equal(r.code, 0, r.stderr);
    await host.waitFor(3);
    assert.equal(host.received.length, 1, 'one transaction for the three recipients');
    const [t] = host.received;
    assert.deepEqual(t!.recipients.sort(), ['a@customer.test', 'b@customer.test', 'c@customer.test']);
    assert.equal(t!.sender, 'web@sender.test');
    const text = t!.data.toString('latin1');
    assert.doesNotMatch(text, /^Bcc:|c@customer\.test/im);
    assert.match(text, /\r\nSubject: php\r\n\r\nline\r\n\.\r\n\.\.two\r\nlast\r\n$/);
  });

  test('a file starting with an mbox "From " line (git format-patch) keeps its header fields', async () => {
    const { s, host } = await world();
    const patch =
      'From 2f1c0de5a0b1 Mon Sep 17 00:00:00 2001\n' +
      'From: Dev <dev@sender.test>\nDate: Tue, 1 Dec 2026 10:00:00 +0000\n' +
      'Subject: [PATCH] fix the thing\n\n---\n a | 1 +\n';
    const r = await sendmail(s, ['-i', 'maint@customer.test'], patch);
    assert.equal(r.code, 0, r.stderr);
    await host.waitFor(1);
    const text = host.received[0]!.data.toString('latin1');
    const head = text.slice(0, text.indexOf('\r\n\r\n')).replaceAll('\r\n', '\n');
    assert.match(head, /^Subject: \[PATCH\] fix the thing$/m);
    assert.match(head, /^From: Dev <dev@sender\.test>$/m);
    assert.doesNotMatch(text, /^From 2f1c0de5a0b1/m);
    assert.equal((head.match(/^Date:/gm) ?? []).length, 1, 'no second Date: added');
  });

  test('a message far over max_message_size exits 65 and says so, like one just over it; nothing is queued', async () => {
    const { s, host } = await world();
    const line = `${'x'.repeat(76)}\n`;
    for (const size of [70 * 1024, 1024 * 1024]) {
      const body = line.repeat(Math.ceil(size / line.length));
      const r = await sendmail(s, ['big@customer.test'], `Subject: big\n\n${body}`);
      assert.equal(r.code, 65, `${size} bytes: ${r.stderr}`);
      assert.match(r.stderr, /larger than 65536 bytes/);
    }
    const ok = await sendmail(s, ['small@customer.test'], 'Subject: small\n\nfits\n');
    assert.equal(ok.code, 0, ok.stderr);
    await host.waitFor(1);
    assert.deepEqual(host.recipients(), ['small@customer.test']);
  });

  test('400 MB piped into sendmail: it stops reading past the limit, exits 65, and stays small', async () => {
    const { s, host } = await world();
    const child = spawn(
      process.execPath,
      [LOGMTA_BIN, 'sendmail', '--config', s.daemon.configFile!, 'big@customer.test'],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.stdout.resume();
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // The peak resident size of the child (VmHWM), sampled while it runs.
    let peakKb = 0;
    const sample = setInterval(() => {
      try {
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (m) peakKb = Math.max(peakKb, Number(m[1]));
      } catch {
        // exited
      }
    }, 5);
    // A script gone wrong: line after line, as fast as the pipe takes them, until EPIPE.
    const total = 400 * 1024 * 1024;
    const block = Buffer.from(
      `Subject: runaway\n\n${`${'x'.repeat(76)}\n`.repeat(13_000)}`.slice(0, 1 << 20),
    );
    let written = 0;
    let broken = false;
    child.stdin.on('error', () => {
      broken = true;
    });
    while (written < total && !broken && child.exitCode === null) {
      const ok = child.stdin.write(block);
      written += block.length;
      if (!ok)
        await new Promise<void>((r) => {
          child.stdin.once('drain', r);
          child.stdin.once('error', r);
          child.once('exit', r);
        });
    }
    if (!broken) child.stdin.end();
    const code = await exited;
    clearInterval(sample);
    assert.ok(written < 64 * 1024 * 1024, `the input was read far past the limit: ${written} bytes taken`);
    assert.ok(peakKb > 0 && peakKb < 150 * 1024, `peak RSS ${peakKb} kB`);
    assert.equal(code, 65, stderr);
    assert.match(
      stderr,
      /message larger than 65536 bytes \(smtp\.max_message_size\); stopped reading the input/,
    );
    // Nothing was queued, and the next message goes through.
    const ok = await sendmail(s, ['small@customer.test'], 'Subject: small\n\nfits\n');
    assert.equal(ok.code, 0, ok.stderr);
    await host.waitFor(1);
    assert.deepEqual(host.recipients(), ['small@customer.test']);
  });
});
