/**
 * @module
 * The browser terminal. `GET /sessions/<name>` without a WebSocket upgrade (the app hands an upgrade of
 * that URL to gateway/sessions/sessions.ts before it gets here) answers a page that runs xterm.js and
 * opens the session at its own URL in tty mode. `GET /_fnix/terminal/<file>` serves that page's files,
 * xterm.js included, from the gateway itself: the page loads nothing from anywhere else.
 *
 * A private function's page is served to anyone (it holds nothing but the name); it asks for an invoke
 * key, keeps it in the tab's sessionStorage and sends it as a `Sec-WebSocket-Protocol` value, which
 * the session's upgrade checks (docs/keys.md says why not a `?key=` in the URL).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Context } from 'hono';
import { FnixError } from '../../runtime/errors.ts';
import type { FunctionRegistry } from '../../runtime/functions/registry.ts';

/** Where the terminal's files are served; the page links them relative to /sessions/<name>. */
export const TERMINAL_ASSETS_PATH = '/_fnix/terminal';

const JAVASCRIPT = 'text/javascript; charset=utf-8';
const CSS = 'text/css; charset=utf-8';

/** The files served under TERMINAL_ASSETS_PATH, and where each is read from. */
const ASSET_SOURCES: Record<string, { path: () => string; type: string }> = {
  'client.js': { path: () => ownFile('client.js'), type: JAVASCRIPT },
  'terminal.css': { path: () => ownFile('terminal.css'), type: CSS },
  // The ES module builds, so that client.js imports them and the page needs no globals.
  'xterm.mjs': { path: () => packageFile('@xterm/xterm/lib/xterm.mjs'), type: JAVASCRIPT },
  'xterm.css': { path: () => packageFile('@xterm/xterm/css/xterm.css'), type: CSS },
  'addon-fit.mjs': { path: () => packageFile('@xterm/addon-fit/lib/addon-fit.mjs'), type: JAVASCRIPT },
};

/**
 * The page's policy: scripts and styles from the gateway only, and connections to it alone.
 * xterm.js writes its own `<style>` elements (cell sizes, colours) at run time, which only
 * 'unsafe-inline' admits for styles; scripts stay strict.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** A Host header fit to be written into a CSP source expression (a name or address, and a port). */
const PLAIN_HOST = /^(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

interface Asset {
  body: Uint8Array<ArrayBuffer>;
  type: string;
  etag: string;
}

interface TerminalFiles {
  page: string;
  assets: Map<string, Asset>;
}

/** What the routes need. */
export interface TerminalRouteOptions {
  registry: FunctionRegistry;
}

/** The handlers of the page and of its files, which read the files once, at their first request. */
export function createTerminalHandlers(options: TerminalRouteOptions) {
  let loading: Promise<TerminalFiles> | undefined;
  const files = () => {
    // A failed read is not kept, so that the next request tries again.
    loading ??= loadFiles().catch((error: unknown) => {
      loading = undefined;
      throw error;
    });
    return loading;
  };

  return {
    /** `GET /sessions/:name`: the terminal page, or the JSON 404 when there is no such function. */
    async servePage(c: Context): Promise<Response> {
      const fn = options.registry.get(c.req.param('name') ?? '');
      const { page } = await files();
      // The files are linked relative to the page, so that a proxy serving fnix under a prefix still works.
      const html = page
        .replaceAll('{{name}}', escapeHtml(fn.name))
        .replaceAll('{{access}}', fn.manifest.access)
        .replaceAll('{{assets}}', `..${TERMINAL_ASSETS_PATH}`);
      return new Response(html, {
        headers: {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          'content-security-policy': `${CSP}; connect-src ${connectSources(c.req.header('host'))}`,
          'x-content-type-options': 'nosniff',
          'referrer-policy': 'no-referrer',
        },
      });
    },

    /** `GET /_fnix/terminal/:file`: one of the page's files, revalidated by its ETag. */
    async serveAsset(c: Context): Promise<Response> {
      const file = c.req.param('file') ?? '';
      const asset = Object.hasOwn(ASSET_SOURCES, file) ? (await files()).assets.get(file) : undefined;
      if (!asset) throw new FnixError('ROUTE_NOT_FOUND', `no terminal file named ${JSON.stringify(file.slice(0, 80))}`);
      const headers = {
        etag: asset.etag,
        // Cached, but checked at every use: a gateway upgraded in place never mixes old and new files.
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
      };
      if (matchesEtag(c.req.header('if-none-match'), asset.etag)) return new Response(null, { status: 304, headers });
      return new Response(asset.body, { headers: { ...headers, 'content-type': asset.type } });
    },
  };
}

/** Reads the page and every asset. */
async function loadFiles(): Promise<TerminalFiles> {
  const entries = await Promise.all(
    Object.entries(ASSET_SOURCES).map(async ([name, source]): Promise<[string, Asset]> => {
      const body = await readFile(source.path());
      return [name, { body, type: source.type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }];
    }),
  );
  return { page: await readFile(ownFile('index.html'), 'utf8'), assets: new Map(entries) };
}

/**
 * A file of gateway/terminal/. Found from this module's own URL, which is gateway/routes/ when run
 * from source and dist/gateway/routes/ once built (scripts/build.sh copies the folder beside it).
 */
function ownFile(name: string): string {
  return fileURLToPath(new URL(`../terminal/${name}`, import.meta.url));
}

/** A file of an installed package, found as Node would find the package. */
function packageFile(specifier: string): string {
  return createRequire(import.meta.url).resolve(specifier);
}

/**
 * Where the page may connect. CSP Level 3 has 'self' cover ws: and wss: on the page's own host, but
 * older browsers (older Safari releases among them) do not, so the host is named too when it is plain.
 */
function connectSources(host: string | undefined): string {
  if (host === undefined || !PLAIN_HOST.test(host)) return "'self'";
  return `'self' ws://${host} wss://${host}`;
}

/** Whether an If-None-Match header names `etag` (weakly compared, as RFC 9110 §13.1.2 asks). */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

/** `text` safe to place in HTML text and in quoted attributes. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
