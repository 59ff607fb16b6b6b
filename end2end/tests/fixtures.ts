// Test fixtures: a real mailpulse server per test, started on a free port
// from the binary the Makefile built, and a page that fails the test on any
// page error (a failed hydration must not pass unnoticed).
import { test as base, expect, Page } from '@playwright/test';
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = process.env.MAILPULSE_BIN || path.join(ROOT, 'target', 'debug', 'mailpulse');
const SITE = process.env.MAILPULSE_SITE_ROOT || path.join(ROOT, 'target', 'site');

export class Mailpulse {
  proc?: ChildProcess;
  baseURL = '';
  port = 0;
  readonly dataDir: string;
  log: string[] = [];

  constructor(readonly extraEnv: Record<string, string> = {}, readonly args: string[] = []) {
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailpulse-e2e-'));
  }

  /** Starts the server; `port` 0 picks a free one, else reuses a known one. */
  async start(port = this.port): Promise<void> {
    const proc = spawn(BIN, ['serve', ...this.args], {
      env: {
        ...process.env,
        MAILPULSE_ADDR: `127.0.0.1:${port}`,
        MAILPULSE_DATA_DIR: this.dataDir,
        MAILPULSE_SITE_ROOT: SITE,
        RUST_LOG: process.env.RUST_LOG || 'info',
        ...this.extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    const addr = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('mailpulse did not start:\n' + this.log.join(''))), 30_000);
      const onData = (chunk: Buffer) => {
        const text = chunk.toString();
        this.log.push(text);
        const m = /listening addr=(\S+)/.exec(text);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      proc.stdout!.on('data', onData);
      proc.stderr!.on('data', onData);
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`mailpulse exited with ${code}:\n` + this.log.join('')));
      });
    });
    this.baseURL = `http://${addr}`;
    this.port = Number(addr.split(':').pop());
    for (let i = 0; i < 400; i++) {
      try {
        const r = await fetch(this.url('/readyz'));
        if (r.ok) return;
      } catch {
        /* not up yet */
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('mailpulse never became ready');
  }

  /** Stops the server (SIGTERM, then SIGKILL after 10 s). */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    this.proc = undefined;
  }

  url(p: string): string {
    return this.baseURL + p;
  }

  /** POSTs webhook events and expects a 200 receipt. */
  async postEvents(events: unknown, headers: Record<string, string> = {}, source = ''): Promise<any> {
    const r = await fetch(this.url('/webhooks/optimizely' + (source ? '/' + source : '')), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(events),
    });
    const body = await r.json();
    expect(r.status, JSON.stringify(body)).toBe(200);
    return body;
  }
}

/** Collects page errors; a test passes only if there were none. */
export async function guardPage(page: Page, use: (p: Page) => Promise<void>) {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (msg) => {
    const t = msg.text();
    if (msg.type() === 'error' && /panicked|hydrat|unreachable|RuntimeError/i.test(t)) {
      errors.push(`console: ${t}`);
    }
  });
  await use(page);
  expect(errors, 'page errors').toEqual([]);
}

export const test = base.extend<{ mailpulse: Mailpulse }>({
  mailpulse: async ({}, use) => {
    const m = new Mailpulse();
    await m.start(0);
    await use(m);
    await m.stop();
    fs.rmSync(m.dataDir, { recursive: true, force: true });
  },
  page: async ({ page }, use) => {
    await guardPage(page, use);
  },
});

/** The number in `data-testid="count-<kind>"` of server-rendered HTML. */
export function countInHtml(html: string, kind: string): number | undefined {
  const m = new RegExp(`data-testid="count-${kind}"[^>]*>([^<]*)<`).exec(html);
  return m ? Number(m[1].trim()) : undefined;
}

export { expect };
