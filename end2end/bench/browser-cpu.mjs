// Browser CPU of one dashboard page, for `mailpulse-bench ui`.
//
// Usage: node bench/browser-cpu.mjs <page-url> <seconds>
// Opens the page in Debian's Chromium (headless, 1920×1080), waits until it
// is live, then measures for <seconds>: the page's main-thread busy time
// (Chrome DevTools Protocol `Performance.getMetrics` TaskDuration, which is
// what DevTools' performance monitor shows as CPU usage) and the CPU time of
// every Chromium process (from /proc). The caller sends the updates; this
// script prints one JSON line with the results.
import { chromium } from '@playwright/test';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';

const [url, seconds = '30'] = process.argv.slice(2);
if (!url) {
  console.error('usage: browser-cpu.mjs <url> <seconds>');
  process.exit(2);
}

/** CPU seconds (user + system) of a process and all its descendants. */
function treeCpuSeconds(rootPid, descendants = true) {
  const hz = 100;
  let total = 0;
  const out = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' });
  const children = new Map();
  for (const line of out.trim().split('\n')) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(pid);
  }
  const stack = [rootPid];
  while (stack.length) {
    const pid = stack.pop();
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) / hz;
    } catch {
      /* exited */
    }
    if (descendants) stack.push(...(children.get(pid) || []));
  }
  return total;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
});
// Chromium's processes are this script's descendants; its own CPU is
// subtracted below.
const chromiumCpu = () => treeCpuSeconds(process.pid) - treeCpuSeconds(process.pid, false);
const page = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
await page.goto(url);
// Live: the header's link status (pages) or a fresh watermark (the wall).
await page.waitForFunction(
  () =>
    document.querySelector('[data-testid="link-status"]')?.textContent === 'live' ||
    (document.querySelector('[data-testid="wall-watermark"]') &&
      !document.querySelector('[data-testid="wall-watermark"]').classList.contains('stale')),
  null,
  { timeout: 30_000 },
);
// Let start-up work (hydration, first chart draw) settle before measuring.
await page.waitForTimeout(3000);
const cdp = await page.context().newCDPSession(page);
await cdp.send('Performance.enable');
const metric = async (name) =>
  (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === name)?.value ?? 0;
const t0 = Date.now();
const task0 = await metric('TaskDuration');
const script0 = await metric('ScriptDuration');
const layout0 = (await metric('LayoutDuration')) + (await metric('RecalcStyleDuration'));
const cpu0 = chromiumCpu();
await page.waitForTimeout(Number(seconds) * 1000);
const wall = (Date.now() - t0) / 1000;
const task = (await metric('TaskDuration')) - task0;
const script = (await metric('ScriptDuration')) - script0;
const layout = (await metric('LayoutDuration')) + (await metric('RecalcStyleDuration')) - layout0;
const cpu = chromiumCpu() - cpu0;
const heap = await metric('JSHeapUsedSize');
await browser.close();
console.log(
  JSON.stringify({
    seconds: wall,
    main_thread_pct: (100 * task) / wall,
    script_pct: (100 * script) / wall,
    layout_pct: (100 * layout) / wall,
    all_processes_pct: (100 * cpu) / wall,
    js_heap_bytes: heap,
    errors,
  }),
);
