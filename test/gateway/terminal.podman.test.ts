/**
 * @module
 * The browser terminal: its page and files over plain HTTP, then the page in real headless Chromium
 * (Debian's, at /usr/bin/chromium; nothing is downloaded) joined to the `shell` example in a real
 * container. The terminal's text is read from xterm.js's DOM renderer, as a user would see it.
 */
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, FIXTURES_DIR, functionsFrom, startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gateway: TestGateway;
let launching: Promise<Browser> | undefined;

beforeAll(async () => {
  // Chromium starts while the runtime does; afterAll closes whichever of them came up.
  launching = chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  gateway = await startTestGateway({ functionsDir: await functionsFrom(EXAMPLES_DIR, FIXTURES_DIR) });
  await launching;
});
afterAll(async () => {
  try {
    await (await launching?.catch(() => undefined))?.close();
  } finally {
    await gateway?.close();
  }
});

describe('the terminal page and its files', () => {
  it('serves the page with a strict policy, and the JSON 404 for an unknown function', async () => {
    const response = await fetch(`${gateway.url}/sessions/shell`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('cache-control')).toBe('no-store');
    const csp = response.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self';");
    expect(csp).toContain(`connect-src 'self' ${gateway.url.replace('http:', 'ws:')} ${gateway.url.replace('http:', 'wss:')}`);
    const html = await response.text();
    expect(html).toContain('<title>shell · fnix</title>');
    expect(html).not.toMatch(/https?:\/\//);

    for (const name of ['no-such-function', 'Not_A_Name']) {
      const missing = await fetch(`${gateway.url}/sessions/${name}`);
      expect(missing.status).toBe(404);
      expect(missing.headers.get('content-type')).toBe('application/json; charset=utf-8');
      expect((await missing.json()).error.code).toBe('FUNCTION_NOT_FOUND');
    }
  });

  it('serves each file with its content type and an ETag, and 304 when it is unchanged', async () => {
    const types = {
      'client.js': 'text/javascript; charset=utf-8',
      'xterm.mjs': 'text/javascript; charset=utf-8',
      'addon-fit.mjs': 'text/javascript; charset=utf-8',
      'xterm.css': 'text/css; charset=utf-8',
      'terminal.css': 'text/css; charset=utf-8',
    };
    for (const [file, type] of Object.entries(types)) {
      const response = await fetch(`${gateway.url}/_fnix/terminal/${file}`);
      expect(response.status, file).toBe(200);
      expect(response.headers.get('content-type'), file).toBe(type);
      expect(response.headers.get('x-content-type-options'), file).toBe('nosniff');
      expect(response.headers.get('cache-control'), file).toBe('no-cache');
      const etag = response.headers.get('etag')!;
      expect(etag, file).toMatch(/^"[\w-]+"$/);
      expect((await response.arrayBuffer()).byteLength, file).toBeGreaterThan(500);
      const again = await fetch(`${gateway.url}/_fnix/terminal/${file}`, { headers: { 'if-none-match': `W/${etag}` } });
      expect(again.status, file).toBe(304);
    }
    const missing = await fetch(`${gateway.url}/_fnix/terminal/package.json`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error.code).toBe('ROUTE_NOT_FOUND');
  });
});

describe('the terminal in a browser', () => {
  it('runs an interactive shell: prompt, typing, resizing, and the exit status', async () => {
    const { page, requests, problems } = await openPage('/sessions/shell');
    try {
      await waitForScreen(page, /fnix:\/\S*\$/);
      await page.keyboard.type("echo hel''lo-from-browser");
      await page.keyboard.press('Enter');
      await waitForScreen(page, /^hello-from-browser$/m);

      // The pty has the size the page asked for, and follows the window.
      const rowsBefore = await renderedRows(page);
      const before = await sttySize(page, 'before');
      expect(before.rows).toBe(rowsBefore);
      await page.setViewportSize({ width: 640, height: 360 });
      await page.waitForFunction((rows) => document.querySelectorAll('.xterm-rows > div').length !== rows, rowsBefore);
      const after = await sttySize(page, 'after');
      expect(after.rows).toBe(await renderedRows(page));
      expect(after.rows).toBeLessThan(before.rows);
      expect(after.cols).toBeLessThan(before.cols);

      await page.keyboard.type('exit 5');
      await page.keyboard.press('Enter');
      await waitForScreen(page, /\[exited with code 5\]/);
      await expect.poll(() => page.textContent('#state')).toMatch(/exited with code 5 · connection closed/);

      const origin = gateway.url;
      expect(requests.http.length).toBeGreaterThanOrEqual(6); // the page and its five files
      for (const url of requests.http) expect(url.startsWith(`${origin}/`), url).toBe(true);
      expect(requests.ws).toEqual([expect.stringMatching(new RegExp(`^${origin.replace('http:', 'ws:')}/sessions/shell\\?tty=1&cols=\\d+&rows=\\d+$`))]);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it("passes the page's query string, but its own tty, cols and rows, to the function", async () => {
    const { page, requests, problems } = await openPage('/sessions/shell?who=a%20browser&tty=0&cols=3');
    try {
      await waitForScreen(page, /fnix:\/\S*\$/);
      await page.keyboard.type('echo "q=$QUERY_STRING"');
      await page.keyboard.press('Enter');
      await waitForScreen(page, /^q=who=a%20browser&tty=1&cols=\d{2,}&rows=\d+$/m);
      expect(requests.ws).toHaveLength(1);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it('writes output as bytes, so a character split across frames comes out whole', async () => {
    const { page, problems } = await openPage('/sessions/shell');
    try {
      await waitForScreen(page, /fnix:\/\S*\$/);
      // The euro sign's three bytes, in two writes a pause apart: two stdout frames.
      await page.keyboard.type("printf 'split:\\342'; sleep 0.3; printf '\\202\\254:end\\n'");
      await page.keyboard.press('Enter');
      await waitForScreen(page, /^split:€:end$/m);
      expect(problems).toEqual([]);
    } finally {
      await page.close();
    }
  });
});

/** Opens `path` in a new page, recording every request it makes and every error it reports. */
async function openPage(path: string) {
  const browser = await launching!;
  const page = await browser.newPage({ viewport: { width: 1000, height: 600 } });
  const requests = { http: [] as string[], ws: [] as string[] };
  const problems: string[] = [];
  page.on('request', (request) => requests.http.push(request.url()));
  page.on('websocket', (ws) => requests.ws.push(ws.url()));
  // A blocked script or style (the page's CSP) shows up here as a console error.
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  // What the page's CSP blocks (xterm.js's own <style> elements, for one) is reported only to the page.
  await page.exposeFunction('reportViolation', (text: string) => problems.push(text));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      (window as unknown as { reportViolation(text: string): void }).reportViolation(`CSP ${event.effectiveDirective} blocked ${event.blockedURI}`);
    });
  });
  const response = await page.goto(`${gateway.url}${path}`);
  expect(response?.status()).toBe(200);
  return { page, requests, problems };
}

/** The terminal's visible lines, as the DOM renderer shows them. */
function screenText(page: Page): Promise<string> {
  return page.$$eval('.xterm-rows > div', (rows) => rows.map((row) => (row.textContent ?? '').replace(/\u00a0/g, ' ').trimEnd()).join('\n'));
}

/** Waits until the terminal's visible text matches `pattern`; on a timeout, the error shows the screen. */
async function waitForScreen(page: Page, pattern: RegExp, timeout = 10_000): Promise<void> {
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
    throw new Error(`the terminal never showed ${pattern}; it shows:\n${await screenText(page)}\nstatus line: ${await page.textContent('#state')}`, {
      cause: error,
    });
  }
}

/** How many rows the terminal renders. */
function renderedRows(page: Page): Promise<number> {
  return page.$$eval('.xterm-rows > div', (rows) => rows.length);
}

/** The size the shell sees, by typing `stty size` after a `label`. */
async function sttySize(page: Page, label: string): Promise<{ rows: number; cols: number }> {
  await page.keyboard.type(`echo ${label}:$(stty size)`);
  await page.keyboard.press('Enter');
  const pattern = new RegExp(`^${label}:(\\d+) (\\d+)$`, 'm');
  await waitForScreen(page, pattern);
  const [, rows, cols] = pattern.exec(await screenText(page))!;
  return { rows: Number(rows), cols: Number(cols) };
}
