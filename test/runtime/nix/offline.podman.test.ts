/**
 * @module
 * The offline package set (runtime/nix/offline, built from Debian's archives) as functions use it: real
 * Python, Node.js, Perl, SQLite and ImageMagick, each run inside a real container that holds nothing of the
 * host but /nix/store, through a real gateway; the example functions that use them; and the closures, one
 * store path per library shared by every package that needs it.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES_DIR, startTestGateway, type TestGateway } from '../../helpers/gateway.ts';
import { GIT_ENV } from '../../helpers/git.ts';

const LANGUAGES_DIR = new URL('../../fixtures/languages', import.meta.url).pathname;

let gw: TestGateway;
let functionsDir: string;

beforeAll(async () => {
  functionsDir = await mkdtemp(join(tmpdir(), 'fnix-offline-'));
  for (const name of ['inventory', 'greet-node', 'thumbnail']) await cp(join(EXAMPLES_DIR, name), join(functionsDir, name), { recursive: true });
  for (const name of await readdir(LANGUAGES_DIR)) await cp(join(LANGUAGES_DIR, name), join(functionsDir, name), { recursive: true });
  gw = await startTestGateway({ functionsDir });
}, 240_000);

afterAll(async () => {
  await gw?.close();
  await rm(functionsDir, { recursive: true, force: true });
});

async function invokeJson(name: string, init?: RequestInit): Promise<Record<string, unknown>> {
  const response = await fetch(`${gw.url}/fn/${name}`, init);
  const text = await response.text();
  expect(response.status, text).toBe(200);
  return JSON.parse(text) as Record<string, unknown>;
}

/** A width x height RGB PNG (a gradient), made here so the test needs no image tool of its own. */
function png(width: number, height: number): Buffer {
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rows.set([(x * 255) / width, (y * 255) / height, 128], y * (width * 3 + 1) + 1 + x * 3);
  }
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

function crc32(data: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** What `file` says about some bytes. */
async function fileSays(bytes: Buffer): Promise<string> {
  const { stdout } = await execa('file', ['-b', '-'], { input: bytes });
  return stdout;
}

describe('languages from the offline set, in containers', () => {
  it('runs python3 with its whole standard library: ssl, sqlite3, zlib, lzma, bz2, decimal, http.server, venv with pip', async () => {
    const report = await invokeJson('py-stdlib');
    expect(report['executable']).toMatch(/^\/nix\/store\/[0-9a-z]{32}-python3-3\.11\.\d+\/bin\/python3$/);
    expect(report['prefix']).toMatch(/^\/nix\/store\/[0-9a-z]{32}-python3-3\.11\.\d+\//);
    expect(report['ssl']).toMatch(/^OpenSSL 3\./);
    expect(report['sqlite']).toMatch(/^3\.\d+\.\d+$/);
    expect(report).toMatchObject({ zlib: expect.any(Number), lzma: true, bz2: true, decimal: '0.3', uuid: 36, http_server: 'HTTPServer' });
    expect(report['venv_pip']).toMatch(/^\d+\.\d+/);
  });

  it('imports python3Packages.requests and its dependencies without the function setting PYTHONPATH', async () => {
    const report = await invokeJson('py-requests');
    expect(report['requests']).toMatch(/^2\./);
    expect(report['urllib3']).toMatch(/^1\./);
    expect(report['file']).toMatch(/^\/nix\/store\/[0-9a-z]{32}-python3-requests-[^/]+\/lib\/python3\.11\/site-packages\/requests\/__init__\.py$/);
    // HTTPS would verify against CA certificates in the store: certifi's own bundle, and cacert's as SSL_CERT_FILE.
    expect(report['certifi']).toMatch(/^\/nix\/store\/[0-9a-z]{32}-python3-certifi-[^/]+\/.*\/cacert\.pem$/);
    expect(report['certifi_cas']).toBeGreaterThan(100);
    expect(report['ssl_cert_file']).toMatch(/^\/nix\/store\/[0-9a-z]{32}-cacert-[^/]+\/etc\/ssl\/certs\/ca-bundle\.crt$/);
    expect(report['default_cas']).toBe(report['certifi_cas']);
  });

  it('runs node, with the modules Debian keeps in files, and a node started by node', async () => {
    const report = await invokeJson('node-fork');
    expect(report).toMatchObject({ child: '42', fetch: 'function' });
    expect(report['version']).toMatch(/^v\d+\./);
    expect(report['zipped']).toBeGreaterThan(0);
  });

  it('runs perl with its core modules, and sqlite3', async () => {
    expect(await invokeJson('perl-core')).toEqual({
      version: expect.stringMatching(/^5\.\d+\.\d+$/),
      floor: 2,
      sha1: '86f7e437faa5a7fce15d1ddcb9eaeaea377667b8',
    });
    // A perl program of the package, through its #! line: the wrapper that gives perl its modules.
    const pretty = await fetch(`${gw.url}/fn/perl-tool`, { method: 'POST', body: '{"b":[1,2],"a":"x"}' });
    expect(await pretty.text()).toBe('{\n   "a" : "x",\n   "b" : [\n      1,\n      2\n   ]\n}\n');
    const rows = (await invokeJson('sqlite-cli')) as unknown as { version: string; answer: number }[];
    expect(rows).toEqual([{ version: expect.stringMatching(/^3\./), answer: 42 }]);
  });
});

describe('the example functions in real languages', () => {
  it('inventory (Python, stdlib only) answers JSON, and a 400 with a JSON error for a bad body', async () => {
    const body = JSON.stringify({
      items: [
        { name: 'bolt', price: 0.25, qty: 40 },
        { name: 'nut', price: 0.1, qty: 100 },
      ],
    });
    const response = await fetch(`${gw.url}/fn/inventory`, { method: 'POST', body });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.json()).toMatchObject({ items: 2, units: 140, total: 20, priciest: 'bolt', python: expect.stringMatching(/^3\.11/) });
    const bad = await fetch(`${gw.url}/fn/inventory`, { method: 'POST', body: 'not json' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: expect.stringContaining('expected') });
    expect((await fetch(`${gw.url}/fn/inventory`)).status).toBe(405);
  });

  it('greet-node (Node.js) answers a JSON greeting and hashes a body', async () => {
    expect(await invokeJson('greet-node?name=Ada')).toMatchObject({ greeting: 'Hello, Ada!', method: 'GET', bodyBytes: 0 });
    const posted = await invokeJson('greet-node', { method: 'POST', body: 'fnix' });
    expect(posted['sha256']).toBe(createHash('sha256').update('fnix').digest('hex'));
    expect(posted).toMatchObject({ method: 'POST', bodyBytes: 4 });
  });

  it('thumbnail (ImageMagick) returns a PNG of the size the query asks for, aspect kept', async () => {
    const image = png(300, 200);
    const response = await fetch(`${gw.url}/fn/thumbnail?size=120x80`, { method: 'POST', body: new Uint8Array(image) });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('image/png');
    expect(await fileSays(Buffer.from(await response.arrayBuffer()))).toMatch(/^PNG image data, 120 x 80,/);
    const square = await fetch(`${gw.url}/fn/thumbnail?size=60`, { method: 'POST', body: new Uint8Array(image) });
    expect(await fileSays(Buffer.from(await square.arrayBuffer()))).toMatch(/^PNG image data, 60 x 40,/);
  });

  it('thumbnail answers 415 for a body that is no image, and 400 for a bad size', async () => {
    const notImage = await fetch(`${gw.url}/fn/thumbnail`, { method: 'POST', body: 'hello' });
    expect(notImage.status).toBe(415);
    expect(await notImage.json()).toEqual({ error: expect.stringContaining('not an image') });
    const badSize = await fetch(`${gw.url}/fn/thumbnail?size=huge`, { method: 'POST', body: new Uint8Array(png(4, 4)) });
    expect(badSize.status).toBe(400);
  });
});

describe('a push of a function in Python', () => {
  it('deploys a function declaring python3Packages.requests, which imports it', async () => {
    const clone = await mkdtemp(join(tmpdir(), 'fnix-offline-push-'));
    try {
      const remote = `${gw.url.replace('http://', `http://fnix:${gw.token}@`)}/git/functions.git`;
      const git = (...args: string[]) => execa('git', args, { cwd: clone, env: GIT_ENV });
      await execa('git', ['clone', '-q', remote, clone], { env: GIT_ENV });
      await mkdir(join(clone, 'functions', 'fetcher'));
      await writeFile(
        join(clone, 'functions', 'fetcher', 'function.json'),
        JSON.stringify({ packages: ['python3', 'python3Packages.requests'], command: ['python3', 'main.py'] }),
      );
      const main = "import requests\nr = requests.Request('GET', 'http://example.com/x', params={'q': 'fnix'}).prepare()\nprint(r.url)\n";
      await writeFile(join(clone, 'functions', 'fetcher', 'main.py'), main);
      await git('add', '-A');
      await git('commit', '-qm', 'A function that uses requests');
      const pushed = await git('push', 'origin', 'main');
      expect(pushed.stderr).toMatch(/functions\/fetcher: built in [\d.]+ s, closure \d+ paths/);
      expect(pushed.stderr).toMatch(/is live: .*fetcher/);
      const response = await fetch(`${gw.url}/fn/fetcher`);
      expect(await response.text()).toBe('http://example.com/x?q=fnix\n');
    } finally {
      await rm(clone, { recursive: true, force: true });
    }
  });
});

describe('closures', () => {
  const closureOf = (name: string) => gw.runtime.registry.get(name).resolution.closure;
  const named = (closure: string[], pattern: RegExp) => closure.filter((p) => pattern.test(p.replace(/^\/nix\/store\/[0-9a-z]{32}-/, '')));

  it("are each package's true closure: glibc, libssl and zlib, one store path each, shared by every function", () => {
    const python = closureOf('py-requests');
    const thumbnail = closureOf('thumbnail');
    const node = closureOf('node-fork');
    for (const closure of [python, thumbnail, node]) expect(named(closure, /^glibc-/)).toHaveLength(1);
    expect(named(python, /^glibc-/)).toEqual(named(thumbnail, /^glibc-/));
    expect(named(python, /^glibc-/)).toEqual(named(node, /^glibc-/));
    expect(named(python, /^libssl3-/)).toHaveLength(1);
    expect(named(python, /^libssl3-/)).toEqual(named(node, /^libssl3-/));
    expect(named(python, /^zlib1g-/)).toEqual(named(thumbnail, /^zlib1g-/));
    // requests brings its dependencies and the interpreter it was packaged for, as in nixpkgs.
    expect(named(python, /^python3-(urllib3|idna|certifi|charset-normalizer)-/)).toHaveLength(4);
    expect(named(python, /^python3-3\./)).toEqual(named(closureOf('py-stdlib'), /^python3-3\./));
  });

  it('holds no Debian archive and nothing of the build (no patchelf, no .deb)', () => {
    for (const name of ['py-requests', 'thumbnail', 'node-fork', 'perl-core']) {
      const closure = closureOf(name);
      expect(closure.filter((p) => p.endsWith('.deb'))).toEqual([]);
      expect(named(closure, /^patchelf-/)).toEqual([]);
    }
  });
});
