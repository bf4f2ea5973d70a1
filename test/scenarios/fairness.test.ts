// A flush is not starved by new mail for the same domain (issue 15): the customer's host deferred
// every message while HELD messages arrived; then it takes mail again, new mail for the domain
// pours in faster than the host can take it, and the customer sends ETRN. The held mail must go out first (the customer asked
// for it) rather than wait behind the new mail. Bounded here (200 held, a destination limited to
// 2 connections with slow replies, a backlog of new mail beyond the in-flight cap);
// LOGMTA_FAIRNESS_HELD=3000 is the size. The figures are printed for docs/reliability.md.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SmtpClient } from '../../src/smtp/client/index.js';
import { scenes } from './kit.js';
import { sendMail } from '../support/inject.js';
import { peakRssOf, rssOf } from '../support/bigmail.js';

const HELD = Number(process.env.LOGMTA_FAIRNESS_HELD ?? 200);
/** New mail waiting before the ETRN: more than the queue's 2,000 deliveries in flight. */
const BACKLOG = 2_200;
const SENDERS = 4;

const scene = scenes();

/** Sends messages to `to(i)` over one connection until `stop.now`. */
async function sender(
  port: number,
  to: (i: number) => string,
  stop: { now: boolean },
  n = Number.POSITIVE_INFINITY,
  pauseMs = 0,
): Promise<number> {
  const c = await SmtpClient.connect('127.0.0.1', port, { name: 'load.test', tls: { mode: 'none' } });
  let sent = 0;
  try {
    while (!stop.now && sent < n) {
      await sendMail(port, { from: 'load@sender.test', to: [to(sent)] }, c);
      sent++;
      // A steady stream (about 4 x 60 messages/s), faster than the customer's host takes it.
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  } finally {
    await c.quit().catch(() => c.close());
  }
  return sent;
}

const mib = (b: number) => Math.round(b / 2 ** 20);

test('an ETRN flush goes first while new mail for the same domain keeps arriving', {
  timeout: 240_000,
}, async () => {
  const host = await scene.customer();
  const s = await scene.stage({
    toml: `
[log]
level = "warn"

[delivery]
concurrency_per_destination = 2

[[etrn]]
domain = "branch.example"
host = "127.0.0.1:${host.port}"
probe_interval = "1h"
`,
  });
  // The held mail: the customer's host answers 451 while it arrives (its mailboxes are offline),
  // so every message is held. Then it takes mail again — slowly (slow replies, 2 connections),
  // more slowly than new mail for the domain arrives.
  let offline = true;
  await host.up({ rcptReply: () => (offline ? '451 4.3.0 mailboxes offline' : undefined) });
  const per = Math.ceil(HELD / SENDERS);
  const none = { now: false };
  await Promise.all(
    Array.from({ length: SENDERS }, (_, k) =>
      sender(s.port, (i) => `held${k * per + i}@branch.example`, none, Math.min(per, HELD - k * per)),
    ),
  );
  await s.waitHeld('branch.example', HELD, 60_000 + HELD * 20);
  offline = false;
  host.opts.delayMs = 10;
  const stop = { now: false };
  const load = Array.from({ length: SENDERS }, (_, k) =>
    sender(s.port, (i) => `new${k}-${i}@branch.example`, stop, Number.POSITIVE_INFINITY, 15),
  );
  const isHeld = (r: string) => r.startsWith('held');
  const count = () => {
    let held = 0;
    let fresh = 0;
    for (const r of host.recipients())
      if (isHeld(r)) held++;
      else fresh++;
    return { held, fresh };
  };
  // Let the new mail build a backlog larger than the queue's in-flight cap: that is what starved
  // the flush (every freed slot went to new mail).
  await s.waitLanes((l) => (l.new ?? 0) >= BACKLOG, `${BACKLOG} new messages waiting`, 120_000);
  const t0 = Date.now();
  const rss0 = rssOf(s.daemon.child.pid);
  const newBefore = count().fresh;
  assert.match(await s.etrn('branch.example'), /^253 /);
  let firstHeldMs: number | undefined;
  const limitMs = 20_000 + HELD * 50;
  while (count().held < HELD && Date.now() - t0 < limitMs) {
    if (firstHeldMs === undefined && count().held > 0) firstHeldMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 20));
  }
  const ms = Date.now() - t0;
  const { held, fresh } = count();
  stop.now = true;
  const sentNew = (await Promise.all(load)).reduce((a, b) => a + b, 0);
  console.log(
    `# fairness: ${HELD} held, ${SENDERS} senders of new mail; ETRN -> first held in ${firstHeldMs ?? '-'} ms, ` +
      `all ${held}/${HELD} held in ${ms} ms; new mail meanwhile: ${fresh - newBefore} delivered, ${sentNew} accepted in all; ` +
      `held delivered twice: ${host.recipients().filter(isHeld).length - held}; RSS ${mib(rss0)} MiB at the ETRN, peak ${mib(peakRssOf(s.daemon.child.pid))}, ${mib(rssOf(s.daemon.child.pid))} after`,
  );
  assert.equal(held, HELD, `every held message delivered within ${limitMs} ms while new mail kept coming`);
  assert.ok(
    firstHeldMs !== undefined && firstHeldMs < 5_000,
    `the first held message within 5 s (${firstHeldMs} ms)`,
  );
  // The flush went first: the destination's connections served mostly held mail meanwhile.
  assert.ok(fresh - newBefore < held, `${fresh - newBefore} new vs ${held} held delivered during the flush`);
});
