// The dashboard in headless Chromium (Debian's chromium driven by playwright-core) against a
// running daemon (playwright gives the browser a fresh temporary profile): the page loads, its four charts render with live data polled from
// /api/stats, the held-domain, destination and oldest-message tables fill, a message link opens
// the `queue show` view, and a screenshot is saved to test-artifacts/dashboard.png.
// biome-ignore-all lint/performance/useDomNodeTextContent: Locator.innerText is playwright's API (rendered text), not the DOM property
// Skipped (with the reason) only when /usr/bin/chromium is not installed; .ci/run installs it.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { hasTool, REPO_ROOT, startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { SmtpSink } from '../support/sink.js';
import { sendMail } from '../support/inject.js';
import { waitFor } from '../support/wait.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');

let browser: Browser | undefined;
const opened: Array<{ stop?: () => Promise<void>; close?: () => Promise<void> }> = [];
after(async () => {
  await browser?.close();
  for (const o of opened.splice(0).reverse()) await (o.stop ?? o.close)?.call(o);
});

/** What the page exposes as window.logmtaDashboard (read inside page.evaluate). */
interface ChartLike {
  config: { type: string };
  canvas: { width: number };
  data: { labels: string[]; datasets: Array<{ label: string; data: number[] }> };
}
interface Dash {
  charts: Record<string, ChartLike>;
  state: { polls: number };
}
/** The page's global object, as seen from functions playwright serialises into the page. */
type PageGlobal = { logmtaDashboard: Dash };

interface ChartInfo {
  type: string;
  labels: number;
  points: number[];
  canvasWidth: number;
}

describe('dashboard', { skip: hasTool(CHROMIUM) ? false : `${CHROMIUM} is not installed` }, () => {
  test('renders live charts and tables from a running daemon, and opens a message', async () => {
    const sink = await SmtpSink.start({
      rcptReply: (a) => (a.startsWith('busy@') ? '451 4.3.0 try later' : undefined),
    });
    opened.push(sink);
    const d: TestDaemon = await startTestDaemon({
      toml: `
[smtp]
relay_networks = ["127.0.0.0/8"]
[admin]
listen = "127.0.0.1:0"
[queue]
retry = ["1h"]
[[route]]
domain = "*"
host = "127.0.0.1:${sink.port}"
[[odmr.account]]
user = "cust"
password = "custpw"
domains = ["odmr.test", "other.test"]
`,
    });
    opened.push(d);
    for (let i = 0; i < 6; i++) await sendMail(d.port, { from: 'a@src.test', to: [`u${i}@dst.test`] });
    for (let i = 0; i < 3; i++) await sendMail(d.port, { from: 'a@src.test', to: [`h${i}@odmr.test`] });
    await sendMail(d.port, { from: 'a@src.test', to: ['x@other.test'] });
    await sendMail(d.port, { from: 'a@src.test', to: ['busy@slow.test'] });
    await waitFor(
      () => d.daemon.metrics.totals.delivered >= 6 && d.daemon.metrics.totals.deferred >= 1,
      'outcomes',
      5000,
    );

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1200 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    const base = `http://${d.daemon.admin.httpAddress}`;
    const res = await page.goto(`${base}/dashboard?interval=300`);
    assert.equal(res?.status(), 200);
    assert.equal(await page.title(), 'logmta dashboard');

    // More mail while the page polls, so the throughput chart sees a rate above zero.
    await page.waitForFunction(
      () => ((globalThis as unknown as Partial<PageGlobal>).logmtaDashboard?.state.polls ?? 0) >= 1,
      null,
      {
        timeout: 10_000,
      },
    );
    for (let i = 0; i < 4; i++) await sendMail(d.port, { from: 'b@src.test', to: [`late${i}@dst.test`] });
    await page.waitForFunction(
      () => ((globalThis as unknown as Partial<PageGlobal>).logmtaDashboard?.state.polls ?? 0) >= 4,
      null,
      {
        timeout: 10_000,
      },
    );

    const charts = (await page.evaluate(() => {
      const out: Record<string, unknown> = {};
      for (const [name, c] of Object.entries((globalThis as unknown as PageGlobal).logmtaDashboard.charts)) {
        out[name] = {
          type: c.config.type,
          labels: c.data.labels.length,
          points: c.data.datasets.map((ds: { data: number[] }) => ds.data.length),
          canvasWidth: c.canvas.width,
        };
      }
      return out;
    })) as Record<string, ChartInfo>;
    assert.deepEqual(Object.keys(charts).sort(), ['depth', 'fsync', 'held', 'throughput']);
    for (const [name, c] of Object.entries(charts)) {
      assert.ok(c.canvasWidth > 0, `${name} has a drawn canvas`);
      assert.ok(c.points.length > 0 && c.points.every((n) => n > 0), `${name} has data points`);
    }
    assert.ok(charts.depth!.labels >= 4, 'the depth chart keeps a history of polls');
    const series = await page.evaluate(() => {
      const c = (globalThis as unknown as PageGlobal).logmtaDashboard.charts;
      return {
        lanes: c.depth!.data.datasets.map((ds: { label: string }) => ds.label),
        delivered: c.throughput!.data.datasets[1]!.data,
        fsync: c.fsync!.data.datasets[0]!.data,
        held: { labels: c.held!.data.labels, data: c.held!.data.datasets[0]!.data },
      };
    });
    assert.ok(series.lanes.includes('new') && series.lanes.includes('retry-3600s'), series.lanes.join(','));
    assert.ok(
      series.delivered.some((v) => v > 0),
      'a delivery rate above zero was charted',
    );
    assert.ok(
      series.fsync.some((v) => v > 0),
      'an fsync latency was charted',
    );
    assert.deepEqual(series.held, { labels: ['odmr.test', 'other.test'], data: [3, 1] });
    assert.equal(await page.locator('canvas').count(), 4);

    // Tables: held domains with their age, busiest and failing destinations, oldest messages.
    assert.match(await page.locator('#held-rows').innerText(), /odmr\.test\s+3/);
    assert.match(await page.locator('#busiest-rows').innerText(), /dst\.test\s+10\s+10/);
    assert.match(await page.locator('#failing-rows').innerText(), /slow\.test\s+1\s+451 try later/);
    assert.equal(await page.locator('#oldest-rows a').count(), 5, 'the five queued messages, linked');
    assert.match(await page.locator('#t-messages').innerText(), /^5$/);

    const shot = join(ARTIFACTS, 'dashboard.png');
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(existsSync(shot));

    // A link into `queue show`: the held message's envelope and history.
    const link = page.locator('#failing-rows a').first();
    const id = await link.innerText();
    await link.click();
    await page.waitForFunction(
      () =>
        (globalThis as unknown as { document: { querySelector(s: string): unknown } }).document.querySelector(
          '#message-body h3',
        ) !== null,
      null,
      { timeout: 5000 },
    );
    const shown = await page.locator('#message').innerText();
    assert.match(shown, new RegExp(`message ${id}`));
    assert.match(shown, /busy@slow\.test/);
    assert.match(shown, /lane retry-3600s/);
    assert.match(shown, /451/);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-message.png') });
    assert.deepEqual(errors, [], 'no errors in the page');
  });
});
