/**
 * @module
 * The browser terminal of a private function, in real headless Chromium (Debian's, at /usr/bin/chromium)
 * against a real gateway: the page asks for the invoke key, keeps it in the tab's sessionStorage, sends
 * it as a WebSocket subprotocol (never in a URL), and the session works; a reload in the same tab does
 * not ask again; a wrong key is forgotten and asked for again.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR, startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';

let gateway: TestGateway;
let functionsDir: string;
let launching: Promise<Browser> | undefined;

beforeAll(async () => {
  launching = chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  functionsDir = await mkdtemp(join(tmpdir(), 'fnix-keys-terminal-'));
  await cp(join(FIXTURES_DIR, 'shell-test'), join(functionsDir, 'priv-shell'), { recursive: true });
  const manifest = JSON.parse(await readFile(join(FIXTURES_DIR, 'shell-test', 'function.json'), 'utf8'));
  await writeFile(join(functionsDir, 'priv-shell', 'function.json'), JSON.stringify({ ...manifest, access: 'key' }));
  gateway = await startTestGateway({ functionsDir });
  await launching;
});
afterAll(async () => {
  try {
    await (await launching?.catch(() => undefined))?.close();
  } finally {
    await gateway?.close();
    if (functionsDir) await rm(functionsDir, { recursive: true, force: true });
  }
});

async function createKey(fn: string): Promise<string> {
  const response = await fetch(`${gateway.url}/api/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TEST_TOKEN}` },
    body: JSON.stringify({ function: fn }),
  });
  expect(response.status).toBe(201);
  return (await response.json()).key;
}

describe('the terminal page of a private function', () => {
  it('asks for the key, sends it in the handshake only, and the session works', async () => {
    const key = await createKey('priv-shell');
    const browser = await launching!;
    const context = await browser.newContext({ viewport: { width: 1000, height: 600 } });
    const page = await context.newPage();
    const urls: string[] = [];
    const problems: string[] = [];
    page.on('request', (request) => urls.push(request.url()));
    page.on('websocket', (ws) => urls.push(ws.url()));
    page.on('pageerror', (error) => problems.push(error.message));
    // What the page's CSP blocks (the form's submit, were it not handled) is reported only to the page.
    await page.exposeFunction('reportViolation', (text: string) => problems.push(text));
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (event) => {
        (window as unknown as { reportViolation(text: string): void }).reportViolation(`CSP ${event.effectiveDirective} blocked ${event.blockedURI}`);
      });
    });
    try {
      const response = await page.goto(`${gateway.url}/sessions/priv-shell`);
      expect(response?.status()).toBe(200);
      await page.waitForSelector('#key-form:not([hidden])');
      expect(urls.filter((url) => url.startsWith('ws'))).toEqual([]);
      await page.fill('#key-input', key);
      await page.click('#key-form button');
      await expect.poll(() => page.textContent('#state'), { timeout: 20_000 }).toMatch(/^connected/);
      expect(await page.isHidden('#key-form')).toBe(true);
      await page.keyboard.type('echo in-$((6*7)); env | grep -c fnixk_ ; echo end');
      await page.keyboard.press('Enter');
      await waitForScreen(page, /^in-42$\n^0$\n^end$/m);

      // The same tab, reloaded: the key comes from sessionStorage, nothing is asked.
      await page.reload();
      await expect.poll(() => page.textContent('#state'), { timeout: 20_000 }).toMatch(/^connected/);
      expect(await page.isHidden('#key-form')).toBe(true);
      await page.keyboard.type('echo again-$((6*7))');
      await page.keyboard.press('Enter');
      await waitForScreen(page, /^again-42$/m);

      expect(await page.evaluate(() => sessionStorage.getItem('fnix.key:/sessions/priv-shell'))).toBe(key);
      for (const url of urls) expect(url, 'a URL carries the key').not.toContain(key.slice(-43));
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it('forgets a refused key and asks again', async () => {
    const browser = await launching!;
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${gateway.url}/sessions/priv-shell`);
      await page.fill('#key-input', 'not a key');
      await page.click('#key-form button');
      await expect.poll(() => page.textContent('#key-note')).toMatch(/not an invoke key/);
      // Well formed, but no such key (and a key of another function is refused the same way).
      await page.fill('#key-input', `fnixk_${'A'.repeat(12)}_${'b'.repeat(43)}`);
      await page.click('#key-form button');
      await page.waitForSelector('#key-form:not([hidden])', { timeout: 20_000 });
      await expect.poll(() => page.textContent('#key-note')).toMatch(/refused/);
      expect(await page.evaluate(() => sessionStorage.getItem('fnix.key:/sessions/priv-shell'))).toBeNull();
      await page.fill('#key-input', await createKey('priv-shell'));
      await page.click('#key-form button');
      await expect.poll(() => page.textContent('#state'), { timeout: 20_000 }).toMatch(/^connected/);
    } finally {
      await context.close();
    }
  });
});

/** Waits until the terminal's visible text matches `pattern`; on a timeout, the error shows the screen. */
async function waitForScreen(page: Page, pattern: RegExp, timeout = 15_000): Promise<void> {
  try {
    await page.waitForFunction(
      ([source, flags]) => {
        const rows = [...document.querySelectorAll('.xterm-rows > div')];
        const text = rows.map((row) => (row.textContent ?? '').replace(/\u00a0/g, ' ').trimEnd()).join('\n');
        return new RegExp(source!, flags).test(text);
      },
      [pattern.source, pattern.flags],
      { timeout, polling: 50 },
    );
  } catch (error) {
    const text = await page.$$eval('.xterm-rows > div', (rows) => rows.map((row) => (row.textContent ?? '').trimEnd()).join('\n'));
    throw new Error(`the terminal never showed ${pattern}; it shows:\n${text}\nstatus line: ${await page.textContent('#state')}`, { cause: error });
  }
}
