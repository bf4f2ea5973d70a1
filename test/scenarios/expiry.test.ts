// Expiry of held mail as senders meet it (issue 10): mail held for a customer that never asks for
// it is returned to its sender (an RFC 3464 report, status 4.4.7) once it is older than the
// domain's max_age — whether or not a flush ever touched it, and across a restart.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { maildirMessages, waitFor } from '../support/daemon.js';
import { type CustomerHost, scenes, type Stage } from './kit.js';

const scene = scenes();

async function setup(maxAge: string): Promise<{ s: Stage; host: CustomerHost; bounces: () => string[] }> {
  const host = await scene.customer();
  const s = await scene.stage({
    toml: `
[[local]]
domain = "sender.test"

[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${host.port}"
probe_interval = "1h"
max_age = "${maxAge}"
`,
  });
  return { s, host, bounces: () => maildirMessages(join(s.dataDir, 'mail', 'sender')) };
}

/** The failed recipients a delivery report names. */
function failedRecipients(report: string): string[] {
  assert.match(report, /^Content-Type: multipart\/report; report-type=delivery-status/im);
  assert.match(report, /^Action: failed/im);
  assert.match(report, /^Status: 4\.4\.7/im);
  return [...report.matchAll(/^Final-Recipient: rfc822;\s*(\S+)/gim)].map((m) => m[1]!);
}

/** The Diagnostic-Code values a delivery report gives. */
function diagnostics(report: string): string[] {
  const unfolded = report.replace(/\r?\n(?=[ \t])/g, ''); // long fields are folded (RFC 5322 §2.2.3)
  return [...unfolded.matchAll(/^Diagnostic-Code: (.*)$/gim)].map((m) => m[1]!.trim());
}

describe('expiry scenarios', () => {
  test('held mail past max_age is bounced to its sender within one expiry interval', async () => {
    const { s, bounces } = await setup('3s');
    const t0 = Date.now();
    await s.send(['a@branch.example', 'b@branch.example']);
    await s.waitHeld('branch.example', 2);
    await waitFor(() => bounces().length >= 2, 'two bounces', 15_000);
    const ms = Date.now() - t0;
    assert.deepEqual(bounces().flatMap(failedRecipients).sort(), ['a@branch.example', 'b@branch.example']);
    await s.waitHeld('branch.example', 0);
    assert.ok(ms >= 3_000, `not before max_age (${ms} ms)`);
    assert.ok(ms < 3_000 + 8_000, `within one expiry interval of max_age (${ms} ms)`);
  });

  test('held mail that went through a failed flush still expires', async () => {
    const { s, bounces } = await setup('4s');
    await s.send(['c@branch.example']);
    await s.waitHeld('branch.example', 1);
    assert.match(await s.etrn('branch.example'), /^253 /); // the host is still down: the flush fails
    await s.waitLog('etrn flush pass done');
    assert.equal(await s.held('branch.example'), 1);
    await waitFor(() => bounces().length >= 1, 'the bounce', 15_000);
    assert.deepEqual(bounces().flatMap(failedRecipients), ['c@branch.example']);
    await s.waitHeld('branch.example', 0);
  });

  test('held mail expires after a restart too (the deadline comes from the logged arrival)', async () => {
    const { s, bounces } = await setup('4s');
    await s.send(['d@branch.example']);
    await s.waitHeld('branch.example', 1);
    await s.restart('SIGKILL');
    await waitFor(() => bounces().length >= 1, 'the bounce', 15_000);
    assert.deepEqual(bounces().flatMap(failedRecipients), ['d@branch.example']);
  });

  test('the report tells the sender why: the last delivery error, not "not attempted"', async () => {
    // Tried at arrival (the host refused), then by a failed flush, then a SIGKILL: each report
    // names the error the last attempt met, as the sender's postmaster needs to see.
    const { s, bounces } = await setup('5s');
    await s.send(['e@branch.example']);
    await s.waitHeld('branch.example', 1);
    await s.restart('SIGKILL'); // only the arrival's error is on disk now
    await s.send(['f@branch.example']);
    await s.waitHeld('branch.example', 2);
    assert.match(await s.etrn('branch.example'), /^253 /); // still down: the flush fails, writes nothing
    await s.waitLog('etrn flush pass done');
    await waitFor(() => bounces().length >= 2, 'two bounces', 20_000);
    const codes = bounces().flatMap(diagnostics);
    assert.equal(codes.length, 2, codes.join('\n'));
    for (const c of codes) {
      assert.doesNotMatch(c, /not attempted/, c);
      assert.match(c, /delivery time expired.*ECONNREFUSED/, c);
    }
  });
});
