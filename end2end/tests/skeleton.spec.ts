// The walking skeleton as a user sees it: numbers on first paint, then live.
import { test, expect, countInHtml } from './fixtures';

test('overview shows server-rendered counts, then updates live', async ({ page, mailpulse }) => {
  await mailpulse.postEvents([
    { type: 'sent', mailingId: 1, recipientId: 'a' },
    { type: 'sent', mailingId: 1, recipientId: 'b' },
  ]);
  // Wait for the engine's tick so the server-rendered HTML holds the counts.
  // The numbers are in the HTML before any script runs.
  await expect
    .poll(async () => countInHtml(await (await fetch(mailpulse.url('/'))).text(), 'sent'))
    .toBe(2);

  await page.goto(mailpulse.url('/'));
  await expect(page.getByTestId('count-sent')).toHaveText('2');
  // Hydrated and connected: the header says live.
  await expect(page.getByTestId('link-status')).toHaveText('live');

  await mailpulse.postEvents({ type: 'sent', mailingId: 1, recipientId: 'c' });
  await expect(page.getByTestId('count-sent')).toHaveText('3', { timeout: 2_000 });
  await mailpulse.postEvents([
    { type: 'OPEN', mailingId: 1, recipientId: 'a' },
    { type: 'click', mailingId: 1, recipientId: 'a' },
  ]);
  await expect(page.getByTestId('count-open')).toHaveText('1', { timeout: 2_000 });
  await expect(page.getByTestId('count-click')).toHaveText('1', { timeout: 2_000 });
});
