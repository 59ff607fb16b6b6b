// Demo mode: a newcomer starts `mailpulse serve --demo` and sees live
// traffic within seconds, without pointing Optimizely anywhere.
import { test, expect, Mailpulse, guardPage } from './fixtures';

test('demo mode shows live traffic within seconds', async ({ browser }) => {
  const m = new Mailpulse({}, ['--demo']);
  await m.start(0);
  try {
    const page = await browser.newPage();
    await guardPage(page, async (page) => {
      await page.goto(m.url('/'));
      await expect(page.getByTestId('link-status')).toHaveText('live');
      const sent = page.getByTestId('count-sent');
      // Simulated campaign and transactional sends arrive without reload.
      await expect.poll(async () => Number(await sent.textContent()), { timeout: 20_000 }).toBeGreaterThan(50);
      const first = Number(await sent.textContent());
      await expect.poll(async () => Number(await sent.textContent()), { timeout: 10_000 }).toBeGreaterThan(first);
    });
    await page.close();
  } finally {
    await m.stop();
  }
});
