/**
 * @module
 * A function's own secrets, masked where fnix keeps its output (docs/secrets.md, runtime/secrets/mask.ts),
 * against a real gateway, real Podman and real pushes: a function that prints its secrets to stderr (from
 * the file, from the variable, its stdout sent to stderr, a value of two lines), a serve function that
 * prints its own to stdout and stderr, and a push whose smoke check prints it: the values appear in no
 * record line, no log line, no push output, no error body, no file of the state folder, each replaced by
 * `[secret NAME]`; the response body (stdout) is the function's own and keeps them. And the credentials
 * of the environment (FNIX_TOKEN, FNIX_SECRETS_KEY, FNIX_METRICS_TOKEN) are not inherited by the real
 * gateway's children (podman, here through a shim that writes down its environment).
 */
import { randomBytes } from 'node:crypto';
import { chmod, cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { git, pushFixtures } from '../helpers/git.ts';
import { startMain } from '../helpers/main-process.ts';
import { waitUntil } from '../helpers/processes.ts';
import { openSession } from '../helpers/session-client.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/secrets-mask', import.meta.url));
const PLAIN = fileURLToPath(new URL('../fixtures/secrets/plain', import.meta.url));
const VALUE = `fnix-mask-canary-${randomBytes(16).toString('hex')}`;
const LINE_ONE = `first-${randomBytes(8).toString('hex')}`;
const LINE_TWO = `second-${randomBytes(8).toString('hex')}`;
/** Shorter than the 4 bytes masked: documented as not masked. */
const TINY = randomBytes(2).toString('hex').slice(0, 3);

let gateway: TestGateway;
let stateDir: string;
let work: string;
let repo: string;
/** Every response body and git output this file saw. */
const seen: string[] = [];

const remote = () => `${gateway.url.replace('http://', `http://fnix:${TEST_TOKEN}@`)}/git/functions.git`;
async function request(path: string, init: RequestInit = {}) {
  const headers = { ...(path.startsWith('/api') ? { authorization: `Bearer ${TEST_TOKEN}` } : {}), ...(init.headers as Record<string, string>) };
  const response = await fetch(`${gateway.url}${path}`, { ...init, headers });
  const text = await response.text();
  seen.push(`${path} ${response.status}\n${text}`);
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, text, body };
}

async function push(message: string, functions: Record<string, string>) {
  const result = await pushFixtures(repo, message, functions);
  seen.push(result.all ?? '');
  return result;
}

/** The text of every log line of `fn` the records keep. */
async function recordLines(fn: string): Promise<string[]> {
  const { body } = await request(`/api/functions/${fn}/logs?limit=10000`);
  return (body.lines as { line: string }[]).map((line) => line.line);
}

const values = [VALUE, LINE_ONE, LINE_TWO];
const holdsAValue = (text: string) => values.some((value) => text.includes(value));

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-mask-'));
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-mask-state-'));
  await cp(PLAIN, join(work, 'initial', 'plain'), { recursive: true });
  gateway = await startTestGateway({ stateDir, functionsDir: join(work, 'initial') });
  repo = join(work, 'clone');
  const cloned = await git(work, 'clone', '--quiet', remote(), repo);
  expect(cloned.exitCode, cloned.all).toBe(0);
  for (const [name, value] of [
    ['LEAK_TOKEN', VALUE],
    ['LEAK_LINES', `${LINE_ONE}\n${LINE_TWO}`],
    ['TINY', TINY],
  ] as const) {
    expect((await request(`/api/secrets/${name}`, { method: 'PUT', body: value })).status).toBe(200);
  }
}, 240_000);
afterAll(async () => {
  await gateway?.close();
  await rm(work, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
});

describe('a function printing its own secrets', () => {
  it('goes live by a push whose output holds none of them', async () => {
    const result = await push('leaky', { plain: PLAIN, leaky: join(FIXTURES, 'leaky'), 'leaky-server': join(FIXTURES, 'leaky-server') });
    expect(result.exitCode, result.all).toBe(0);
  });

  it('returns them in its response body, which is its own', async () => {
    const { status, text } = await request('/fn/leaky');
    expect(status, text).toBe(200);
    expect(text).toBe(`body: ${VALUE}\n`);
  });

  it('has them masked in its error body stderr', async () => {
    const { status, body } = await request('/fn/leaky?fail');
    expect(status).toBe(502);
    expect(body.error.code).toBe('FUNCTION_FAILED');
    expect(body.error.stderr).toContain('failing with [secret LEAK_TOKEN]');
    expect(holdsAValue(JSON.stringify(body))).toBe(false);
  });

  it('has them masked in its records lines, a session and a serve instance included', async () => {
    const session = await openSession(gateway.url, '/sessions/leaky');
    session.send(0, '');
    const { status } = await session.closed;
    expect(status?.exitCode).toBe(0);
    // What the session's client gets is the function's own: stderr, unmasked, as with stdout.
    expect(session.text(2)).toContain(VALUE);
    expect((await request('/fn/leaky-server/hello')).text).toBe('ok\n');
    let lines: string[] = [];
    await waitUntil(
      async () => {
        lines = await recordLines('leaky');
        return lines.filter((line) => line.startsWith('from the file')).length >= 3;
      },
      30_000,
      'the records to hold the three invocations',
    );
    expect(lines).toContain('from the file: [secret LEAK_TOKEN]');
    expect(lines).toContain('from the variable: [secret LEAK_TOKEN].');
    expect(lines).toContain('stdout to stderr: [secret LEAK_TOKEN]');
    expect(lines).toContain('lines: [secret LEAK_LINES]');
    expect(lines).toContain('[secret LEAK_LINES]');
    expect(lines).toContain('failing with [secret LEAK_TOKEN]');
    // Too short to mask (docs/secrets.md): kept as it is.
    expect(lines).toContain(`tiny=${TINY}`);
    let served: string[] = [];
    await waitUntil(
      async () => {
        served = await recordLines('leaky-server');
        return served.some((line) => line.startsWith('request stderr'));
      },
      30_000,
      'the serve instance lines',
    );
    expect(served).toContain('server started with [secret LEAK_TOKEN]');
    expect(served).toContain('server stderr has [secret LEAK_TOKEN]');
    expect(served).toContain('request /hello with [secret LEAK_TOKEN]');
    expect(served).toContain('request stderr [secret LEAK_TOKEN]');
    expect([...lines, ...served].filter(holdsAValue)).toEqual([]);
  });

  it('has them masked in the gateway log', () => {
    const logs = gateway.logs.join('\n');
    expect(logs).toContain('from the file: [secret LEAK_TOKEN]');
    expect(logs).toContain('server stderr has [secret LEAK_TOKEN]');
    expect(gateway.logs.filter(holdsAValue)).toEqual([]);
  });
});

describe('a push whose smoke check prints a secret', () => {
  it('is refused quoting its stderr, the secret masked', async () => {
    const result = await push('smoky', { plain: PLAIN, leaky: join(FIXTURES, 'leaky'), smoky: join(FIXTURES, 'smoky') });
    expect(result.exitCode, result.all).not.toBe(0);
    expect(result.all).toMatch(/functions\/smoky: .*127.*smoke check sees \[secret LEAK_TOKEN\]/);
    expect(holdsAValue(result.all ?? '')).toBe(false);
    const { body } = await request('/api/deployments');
    expect(JSON.stringify(body)).toContain('smoke check sees [secret LEAK_TOKEN]');
    await git(repo, 'reset', '--quiet', '--hard', 'origin/main');
  });
});

describe('the values', () => {
  it('are in no response but the bodies the function returned, and in no file of the state folder', async () => {
    const leaked = seen.filter(holdsAValue);
    expect(leaked.length).toBeGreaterThan(0); // the control: /fn/leaky's bodies
    expect(leaked.filter((text) => !text.startsWith('/fn/leaky 200'))).toEqual([]);
    for (const value of values) {
      const grep = await execa('grep', ['-r', '-a', '-F', '-l', value, stateDir], { reject: false });
      expect(grep.exitCode, `files holding it: ${grep.stdout}`).toBe(1);
    }
  });
});

describe('the credentials in the environment', () => {
  it('are not inherited by the real gateway’s children', async () => {
    const shims = await mkdtemp(join(tmpdir(), 'fnix-env-shim-'));
    const dumps = join(shims, 'dumps');
    const state = await mkdtemp(join(tmpdir(), 'fnix-env-state-'));
    await mkdir(dumps);
    const podman = (await execa('sh', ['-c', 'command -v podman'])).stdout.trim();
    await writeFile(join(shims, 'podman'), `#!/bin/sh\nenv > "$FNIX_TEST_ENV_DUMPS/podman.$$"\nexec ${podman} "$@"\n`);
    await chmod(join(shims, 'podman'), 0o755);
    const credentials = {
      FNIX_TOKEN: `token-${randomBytes(12).toString('hex')}`,
      FNIX_SECRETS_KEY: randomBytes(32).toString('base64'),
      FNIX_METRICS_TOKEN: `metrics-${randomBytes(12).toString('hex')}`,
    };
    const main = await startMain({
      ...credentials,
      FNIX_STATE_DIR: state,
      FNIX_POOL_SIZE: '1',
      FNIX_TEST_ENV_DUMPS: dumps,
      PATH: `${shims}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    });
    try {
      // It took the credentials: the token opens the API.
      const api = await fetch(`${main.url}/api/secrets`, { headers: { authorization: `Bearer ${credentials.FNIX_TOKEN}` } });
      expect(api.status).toBe(200);
      const files = await readdir(dumps);
      expect(files.length, 'podman ran through the shim').toBeGreaterThan(0);
      for (const file of files) {
        const env = await readFile(join(dumps, file), 'utf8');
        expect(env, 'the shim saw the environment').toContain('FNIX_TEST_ENV_DUMPS=');
        for (const [name, value] of Object.entries(credentials)) {
          expect(env, file).not.toContain(`${name}=`);
          expect(env, file).not.toContain(value);
        }
      }
    } finally {
      main.child.kill('SIGTERM');
      await main.child;
      await rm(shims, { recursive: true, force: true });
      await rm(state, { recursive: true, force: true });
    }
  }, 240_000);
});
