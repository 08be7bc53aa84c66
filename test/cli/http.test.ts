/**
 * @module
 * The CLI's HTTP as a process sees it (cli/main.ts run by node with tsx, as bin/fnix.mjs runs its
 * compiled copy) against a local HTTP server standing in for the gateway, for what a real gateway will
 * not do on demand: the exact request `fnix invoke` sends (no Accept-Encoding), a gzip answer passed on
 * undecoded, a function's own error answers told from the gateway's (x-fnix-error), connections that
 * break mid-answer (CONNECTION_LOST, exit 3, no stack), -n/--no-stdin, and a --since no date holds.
 * And bin/fnix.mjs rebuilding a dist/ that has no build stamp, in a copy of its folder layout.
 * (test/cli/cli.podman.test.ts runs the same against a real gateway and real functions.)
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

// Each test starts node processes (about 1 s each on a loaded machine).
vi.setConfig({ testTimeout: 120_000 });

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAIN = pathToFileURL(join(ROOT, 'cli/main.ts')).href;
const RUN = `import { run } from ${JSON.stringify(MAIN)}; process.exitCode = await run(process.argv);`;

/** What the server was asked. */
interface Asked {
  method: string;
  url: string;
  rawHeaders: string[];
  body: Buffer;
}

let server: Server;
let url: string;
let asked: Asked[] = [];
let handler: (request: IncomingMessage, response: ServerResponse, body: Buffer) => void = (_q, response) => response.end();

beforeAll(async () => {
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      asked.push({ method: request.method!, url: request.url!, rawHeaders: request.rawHeaders, body });
      handler(request, response, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(() => {
  asked = [];
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/**
 * `fnix args...` run from cli/main.ts, its stdout as bytes; stdin closed, or with `input`, a real shell
 * pipe (`printf ... | fnix`: a FIFO, as a user's; execa's own stdin would be a socket).
 */
function fnix(args: string[], input?: string) {
  const command = ['node', '--import', 'tsx', '--input-type=module', '-e', RUN, 'fnix', ...args];
  const [file, argv] = input === undefined ? ['node', command.slice(1)] : ['bash', ['-c', 'printf %s "$0" | "$@"', input, ...command]];
  return execa(file!, argv as string[], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'], HOME: tmpdir(), XDG_CONFIG_HOME: join(tmpdir(), 'fnix-http-test-none'), FNIX_URL: url, FNIX_TOKEN: 'test-token' },
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    encoding: 'buffer',
    stripFinalNewline: false,
    timeout: 60_000,
  });
}
const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

/** The header names of a request, lower-cased, in order. */
const namesOf = (raw: string[]) => raw.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase());

describe('fnix invoke', () => {
  it('sends only the headers given (no Accept-Encoding, no User-Agent) and writes a gzip answer undecoded, byte for byte', async () => {
    const plain = Buffer.from('squeezed '.repeat(2000));
    const gzipped = gzipSync(plain);
    handler = (_request, response) => {
      response.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Encoding': 'gzip', 'Content-Length': gzipped.length });
      response.end(gzipped);
    };
    const result = await fnix(['invoke', 'zipped', 'a/b?x=1', '-H', 'X-Test: 1', '--key', 'k-123']);
    expect(result.exitCode, text(result.stderr)).toBe(0);
    expect(Buffer.compare(Buffer.from(result.stdout), gzipped)).toBe(0);
    expect(text(result.stderr)).toBe('');
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatchObject({ method: 'GET', url: '/fn/zipped/a/b?x=1' });
    expect(namesOf(asked[0]!.rawHeaders).sort()).toEqual(['connection', 'host', 'x-fnix-key', 'x-test']);
    // A body: its length is added, and nothing else.
    const posted = await fnix(['invoke', 'zipped', '-d', 'hi']);
    expect(posted.exitCode).toBe(0);
    expect(asked[1]).toMatchObject({ method: 'POST', body: Buffer.from('hi') });
    expect(namesOf(asked[1]!.rawHeaders).sort()).toEqual(['connection', 'content-length', 'host']);
  });

  it('takes a function\'s own 401, and its {"error":…} body, as its answer: body on stdout, status on stderr, exit 1', async () => {
    const body = '{"error":{"code":"NOT_YOURS","message":"the function says no"}}\n';
    for (const status of [401, 500]) {
      handler = (_request, response) => {
        response.writeHead(status, { 'Content-Type': 'application/json', 'x-fnix-invocation-id': 'inv-1' });
        response.end(body);
      };
      const result = await fnix(['invoke', 'picky']);
      expect(result.exitCode, `${status}: ${text(result.stderr)}`).toBe(1);
      expect(text(result.stdout)).toBe(body);
      expect(text(result.stderr)).toMatch(new RegExp(`^fnix: picky answered ${status} [\\w ]+ \\(invocation inv-1\\)\\n$`));
    }
  });

  it('takes an answer with x-fnix-error as the gateway error it is: code and message on stderr, nothing on stdout', async () => {
    handler = (_request, response) => {
      response.writeHead(401, { 'Content-Type': 'application/json', 'x-fnix-error': 'KEY_REQUIRED', 'x-fnix-invocation-id': 'inv-2' });
      response.end('{"error":{"code":"KEY_REQUIRED","message":"function \'p\' is private","function":"p"}}');
    };
    const result = await fnix(['invoke', 'p']);
    expect(result.exitCode).toBe(4);
    expect(text(result.stdout)).toBe('');
    expect(text(result.stderr)).toContain("fnix: KEY_REQUIRED (401): function 'p' is private\n  function: p\n  invocation: inv-2");
    // Marked, but with a body that is no JSON error: the header's code.
    handler = (_request, response) => {
      response.writeHead(502, { 'x-fnix-error': 'FUNCTION_FAILED' });
      response.end('garbled');
    };
    const garbled = await fnix(['invoke', 'p']);
    expect(garbled.exitCode).toBe(1);
    expect(text(garbled.stderr)).toMatch(/^fnix: FUNCTION_FAILED \(502\): /);
  });

  it('with -n never reads stdin, even piped; without it a piped stdin is the body', async () => {
    handler = (_request, response, body) => response.end(`${body.length} bytes`);
    const piped = await fnix(['invoke', 'echo'], 'loop input\n');
    expect(text(piped.stdout)).toBe('11 bytes');
    expect(asked[0]).toMatchObject({ method: 'POST', body: Buffer.from('loop input\n') });
    const ignored = await fnix(['invoke', '-n', 'echo'], 'loop input\n');
    expect(ignored.exitCode, text(ignored.stderr)).toBe(0);
    expect(text(ignored.stdout)).toBe('0 bytes');
    expect(asked[1]).toMatchObject({ method: 'GET', body: Buffer.alloc(0) });
    expect(namesOf(asked[1]!.rawHeaders)).not.toContain('content-length');
    expect(text((await fnix(['invoke', '--no-stdin', 'echo', '-d', 'given'], 'x')).stdout)).toBe('5 bytes');
    const both = await fnix(['invoke', '-n', 'echo', '--data-binary', '@-'], 'x');
    expect(both.exitCode).toBe(2);
    expect(text(both.stderr)).toContain('fnix: USAGE: --data-binary @- reads stdin, which -n (--no-stdin) forbids');
    expect(asked).toHaveLength(3);
  });
});

describe('a connection lost mid-answer', () => {
  /** Sends the head and `sent`, announcing more, then cuts the connection. */
  const cutAfter = (sent: string, headers: Record<string, string> = {}) => {
    handler = (_request, response) => {
      response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': '100000', ...headers });
      response.write(sent, () => setTimeout(() => response.socket?.destroy(), 100));
    };
  };
  const lost = (stderr: Uint8Array) => {
    expect(text(stderr)).toMatch(new RegExp(`^fnix: CONNECTION_LOST: the connection to ${url} was lost before the answer ended \\(\\w+\\)\\n`));
    expect(text(stderr)).toContain('hint: the gateway stopped or restarted');
    expect(text(stderr)).not.toContain('internal error');
    expect(text(stderr)).not.toMatch(/\n\s+at /);
  };

  it('ends logs --follow with CONNECTION_LOST and exit 3, after the lines that came', async () => {
    handler = (_request, response) => {
      response.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
      const line = { time: '2026-12-02T01:00:00.000Z', function: 'echo', invocationId: 'inv-1', instance: null, stream: 'stderr', line: 'POST /x' };
      response.write(`${JSON.stringify(line)}\n`, () => setTimeout(() => response.socket?.destroy(), 200));
    };
    const result = await fnix(['logs', 'echo', '--follow']);
    expect(result.exitCode).toBe(3);
    expect(text(result.stdout)).toBe('2026-12-02T01:00:00.000Z stderr [inv-1] POST /x\n');
    lost(result.stderr);
    expect(asked[0]!.url).toBe('/api/functions/echo/logs?follow=1');
  });

  it('ends a JSON answer read whole (fnix ls) with CONNECTION_LOST and exit 3', async () => {
    cutAfter('{"functions":[');
    const result = await fnix(['ls']);
    expect(result.exitCode).toBe(3);
    lost(result.stderr);
  });

  it('ends an invocation with CONNECTION_LOST and exit 3, after the bytes that came', async () => {
    cutAfter('the first part', { 'Content-Type': 'text/plain' });
    const result = await fnix(['invoke', 'echo']);
    expect(result.exitCode).toBe(3);
    expect(text(result.stdout)).toBe('the first part');
    lost(result.stderr);
  });
});

describe('--since', () => {
  it('is a usage error (exit 2) when it reaches back further than a date holds', async () => {
    const result = await fnix(['logs', 'echo', '--since', '99999999999d']);
    expect(result.exitCode).toBe(2);
    expect(text(result.stderr)).toMatch(/^fnix: USAGE: --since "99999999999d" reaches back before the year 0\n/);
    expect(asked).toHaveLength(0);
  });
});

describe('bin/fnix.mjs', () => {
  let root: string;
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('rebuilds a dist/ that has no build stamp, and then does not until cli/ changes', async () => {
    // The layout bin/fnix.mjs looks at: cli/, dist/cli/main.js, dist/.fnix-build-hash, tsc, scripts/build.sh.
    root = await mkdtemp(join(tmpdir(), 'fnix-bin-'));
    await mkdir(join(root, 'bin'));
    await copyFile(join(ROOT, 'bin/fnix.mjs'), join(root, 'bin/fnix.mjs'));
    await writeFile(join(root, 'package.json'), '{"version":"9.9.9"}');
    await mkdir(join(root, 'cli'));
    await writeFile(join(root, 'cli/main.ts'), '// sources');
    await mkdir(join(root, 'node_modules/.bin'), { recursive: true });
    await writeFile(join(root, 'node_modules/.bin/tsc'), '');
    await mkdir(join(root, 'dist/cli'), { recursive: true });
    const mainOf = (label: string) => `export async function run() { process.stdout.write('${label}\\n'); return 0; }\n`;
    // An old build, from before the stamp: its sources are older than it, so only the missing stamp says so.
    await writeFile(join(root, 'dist/cli/main.js'), mainOf('old build'));
    const past = new Date(Date.now() - 3_600_000);
    await utimes(join(root, 'cli/main.ts'), past, past);
    // The build: counts its runs, writes the new main.js and the stamp, as scripts/build.sh does.
    await mkdir(join(root, 'scripts'));
    await writeFile(join(root, 'new-main.js'), mainOf('new build'));
    await writeFile(
      join(root, 'scripts/build.sh'),
      'cd "$(dirname "$0")/.." && echo run >> builds && cp new-main.js dist/cli/main.js && echo hash > dist/.fnix-build-hash\n',
    );
    const bin = () => execa('node', [join(root, 'bin/fnix.mjs')], { cwd: root, reject: false, stdin: 'ignore' });
    const first = await bin();
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stdout).toBe('new build');
    const second = await bin();
    expect(second.stdout).toBe('new build');
    expect((await readFile(join(root, 'builds'), 'utf8')).trim().split('\n')).toHaveLength(1);
    // A source newer than the stamp: built again.
    const future = new Date(Date.now() + 60_000);
    await utimes(join(root, 'cli/main.ts'), future, future);
    await bin();
    expect((await readFile(join(root, 'builds'), 'utf8')).trim().split('\n')).toHaveLength(2);
  });
});
