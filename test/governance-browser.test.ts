// The bundle's summary page and the gap page opened in real Chromium (Debian's `chromium`, driven by
// playwright-core) with every network request refused: the key figures are read from the DOM and checked
// against the bundle's own JSON, and a screenshot of each page is written to the test output.
// Skips with a reason when /usr/bin/chromium or playwright-core is missing; fails instead under CI=true.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { reportCommand } from '../src/cli/report.js';
import { recordScenario, type Scenario } from './governance-fixture.js';

const CHROMIUM = '/usr/bin/chromium';

type Playwright = typeof import('playwright-core');
async function loadPlaywright(): Promise<Playwright | undefined> {
  try {
    return await import('playwright-core');
  } catch {
    return undefined;
  }
}
const playwright = await loadPlaywright();
const missing = !existsSync(CHROMIUM)
  ? `Debian's chromium is not installed at ${CHROMIUM} (apt-get install chromium)`
  : playwright === undefined
    ? 'playwright-core is not installed (npm install --save-dev playwright-core)'
    : undefined;

let s: Scenario | undefined;
after(() => {
  if (s) rmSync(s.dir, { recursive: true, force: true });
});

if (missing !== undefined && process.env.CI === 'true') {
  test('the summary and gap pages render in Chromium', () => {
    assert.fail(`cannot run the browser test under CI: ${missing}`);
  });
} else {
  test('the summary and gap pages render in Chromium, offline', { skip: missing }, async (t) => {
    s = await recordScenario();
    const bundle = join(s.dir, 'bundle');
    const sink = new PassThrough();
    sink.resume();
    const code = await reportCommand(
      [
        '--from',
        new Date(s.from).toISOString(),
        '--to',
        new Date(s.to).toISOString(),
        '--policy',
        s.policyFile,
        '--declarations',
        s.declFile,
        '--store',
        s.store,
        '--key',
        s.keyPath,
        '--out',
        bundle,
      ],
      { stdout: sink, stderr: sink },
    );
    assert.equal(code, 0);
    const controls = JSON.parse(readFileSync(join(bundle, 'controls', 'index.json'), 'utf8')) as {
      controls: { id: string; status: string }[];
    };
    const gap = JSON.parse(readFileSync(join(bundle, 'gap.json'), 'utf8')) as {
      totals: Record<string, number>;
      rows: { status: string }[];
      records: { decisions: number };
    };

    const browser = await (playwright as Playwright).chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    const shots = join(tmpdir(), 'execlayer-test-output');
    mkdirSync(shots, { recursive: true });
    try {
      const page = await browser.newPage();
      const requests: string[] = [];
      // The pages must be self-contained: anything but the file itself is refused and counted.
      await page.route('**/*', (route) => {
        const url = route.request().url();
        if (url.startsWith('file://')) return route.continue();
        requests.push(url);
        return route.abort();
      });

      await page.goto(pathToFileURL(join(bundle, 'summary.html')).href);
      assert.equal(await page.textContent('#figure-decisions'), String(gap.records.decisions));
      for (const c of controls.controls) {
        assert.equal(await page.getAttribute(`[id="control-${c.id}"]`, 'data-status'), c.status, c.id);
      }
      assert.equal(await page.textContent('#gap-over_permitted'), '1');
      const summaryShot = join(shots, 'evidence-summary.png');
      await page.screenshot({ path: summaryShot, fullPage: true });
      t.diagnostic(`screenshot: ${summaryShot}`);

      await page.goto(pathToFileURL(join(bundle, 'gap.html')).href);
      for (const status of Object.keys(gap.totals)) {
        assert.equal(await page.textContent(`#total-${status}`), String(gap.totals[status]), status);
      }
      assert.equal(await page.locator('tr[data-status]').count(), gap.rows.length);
      const over = page.locator('tr[data-status="over_permitted"]');
      assert.match((await over.first().textContent()) ?? '', /declared >= 0, <= 200/);
      const gapShot = join(shots, 'gap-report.png');
      await page.screenshot({ path: gapShot, fullPage: true });
      t.diagnostic(`screenshot: ${gapShot}`);
      assert.deepEqual(requests, [], 'the pages fetched nothing');
    } finally {
      await browser.close();
    }
  });
}
