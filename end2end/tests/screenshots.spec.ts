// Screenshots for the README, taken from a real server in demo mode (the
// in-process simulator sends campaign and transactional traffic through the
// real HTTP path). Each run overwrites docs/screenshots/*.png, so the README
// always shows the current UI.
import { test, expect, Mailpulse, guardPage } from './fixtures';
import * as path from 'node:path';

const OUT = path.resolve(__dirname, '..', '..', 'docs', 'screenshots');

test('screenshots of overview, mailing detail and wall', async ({ browser }) => {
  test.setTimeout(120_000);
  const m = new Mailpulse({}, ['--demo']);
  await m.start(0);
  try {
    // Let the demo fill a few minutes of simulated traffic.
    await expect
      .poll(async () => {
        const r = await (await fetch(m.url('/api/v1/summary?window=15m'))).json();
        return r.overall?.totals?.counters?.sent ?? 0;
      }, { timeout: 60_000, intervals: [1000] })
      .toBeGreaterThan(1500);

    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    await guardPage(page, async (page) => {
      await page.goto(m.url('/?range=15m'));
      // This only takes pictures: allow the debug wasm's first load longer
      // than the default 5 s while the demo's simulator keeps both cores
      // busy (it took longer once in CI; the page then went live).
      await expect(page.getByTestId('link-status')).toHaveText('live', { timeout: 15_000 });
      await page.waitForTimeout(1500);
      await page.screenshot({ path: path.join(OUT, 'overview.png'), fullPage: true });

      await page.goto(m.url('/mailings/7101?range=15m'));
      await expect(page.getByTestId('link-status')).toHaveText('live', { timeout: 15_000 });
      await expect(page.getByTestId('funnel-sent')).not.toHaveText('0');
      await page.waitForTimeout(1500);
      await page.screenshot({ path: path.join(OUT, 'mailing.png'), fullPage: true });
    });
    await page.close();

    const wall = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
    await guardPage(wall, async (wall) => {
      await wall.goto(m.url('/wall'));
      await expect(wall.getByTestId('wall-watermark')).not.toHaveClass(/stale/);
      await wall.waitForTimeout(1500);
      await wall.screenshot({ path: path.join(OUT, 'wall.png') });
    });
    await wall.close();
  } finally {
    await m.stop();
  }
});
