// The dashboard's cluster view in headless Chromium: two real nodes and a real Redis; node a's
// page lists both nodes alive with their queues, the domain homes with the held mail per node,
// then node b dead once it stops. A screenshot goes to test-artifacts/dashboard-cluster.png.
// biome-ignore-all lint/performance/useDomNodeTextContent: Locator.innerText is playwright's API (rendered text), not the DOM property
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Browser, chromium } from 'playwright-core';
import { hasTool, REPO_ROOT } from '../support/daemon.js';
import { redisMissing } from '../support/redis.js';
import { acmeAccount, TestCluster } from './kit.js';
import { sendMail } from '../support/inject.js';

const CHROMIUM = '/usr/bin/chromium';
const skip = redisMissing() ?? (hasTool(CHROMIUM) ? undefined : `${CHROMIUM} is not installed`);

describe('cluster: the dashboard shows the cluster', { skip }, () => {
  let c: TestCluster;
  let browser: Browser | undefined;

  before(async () => {
    c = await TestCluster.start(['a', 'b'], {
      admin: true,
      toml: acmeAccount('acme.test'),
    });
    await c.converged();
    assert.equal((await c.node('a').cli(['home', 'acme.test', 'b'])).code, 0);
  });
  after(async () => {
    await browser?.close();
    await c?.stopAll();
  });

  test('nodes with their state and queues, homes with held mail, a dead node marked', async () => {
    const [a, b] = [c.node('a'), c.node('b')];
    for (let i = 0; i < 2; i++) await sendMail(a.smtpPort, { from: 'x@o.test', to: ['u@acme.test'] });
    const m = /"http":"([^"]+)"/.exec(a.daemon?.stdout() ?? '');
    assert.ok(m, 'admin address');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1600 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://${m[1]}/dashboard?interval=300`);
    const nodes = page.locator('#cluster-nodes');
    // Expressions run in the page (no DOM types here).
    await page.waitForFunction(
      "(document.querySelector('#cluster-homes')?.textContent ?? '').includes('b: 2')",
      undefined,
      {
        timeout: 20_000,
      },
    );
    assert.equal(await page.locator('#cluster').isVisible(), true);
    const rows = await nodes.innerText();
    assert.match(rows, /a \(this node\)\s+alive/);
    assert.match(rows, /\bb\s+alive/);
    assert.match(await page.locator('#cluster-homes').innerText(), /acme\.test\s+b\s+b: 2/);
    const dir = join(REPO_ROOT, 'test-artifacts');
    mkdirSync(dir, { recursive: true });
    await page.locator('#cluster').screenshot({ path: join(dir, 'dashboard-cluster.png') });
    await b.stop();
    await page.waitForFunction(
      "/\\bb\\s+dead/.test(document.querySelector('#cluster-nodes')?.innerText ?? '')",
      undefined,
      {
        timeout: 20_000,
      },
    );
    assert.deepEqual(errors, []);
  });
});
