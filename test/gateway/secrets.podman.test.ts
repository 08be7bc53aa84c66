/**
 * @module
 * Secrets against a real gateway, real Podman and real pushes (docs/secrets.md): set through the API,
 * declared by pushed functions and read at /run/secrets/<NAME> and as a variable (mode 0400, the
 * container's uid); gone after every invocation, and never seen by a function that did not declare
 * it; rotated for the next invocation and for serve instances (restarted); removal refused while in
 * use; a push and a rollback naming a missing secret refused; kept across a restart, refused under
 * another key. And the leak test: a recognisable value, every path that writes something, then the
 * state folder, the gateway's log and every response body searched for it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FnixError } from '../../runtime/errors.ts';
import { startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { git, pushFixtures } from '../helpers/git.ts';
import { startMain } from '../helpers/main-process.ts';
import { openSession } from '../helpers/session-client.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/secrets', import.meta.url));
/** Recognisable, random, and long enough that no accident contains it. */
const VALUE = `fnix-leak-canary-${randomBytes(16).toString('hex')}`;
const ROTATED = `fnix-leak-canary-rotated-${randomBytes(16).toString('hex')}`;
const sha = (text: string) => createHash('sha256').update(text).digest('hex');

let gateway: TestGateway;
let stateDir: string;
let work: string;
let repo: string;
/** Every response body and every git output this file saw, for the leak test. */
const seen: string[] = [];
/** The log of the gateway before the restart. */
const earlierLogs: string[] = [];

const remote = () => `${gateway.url.replace('http://', `http://fnix:${TEST_TOKEN}@`)}/git/functions.git`;
async function request(path: string, init: RequestInit & { token?: boolean } = {}) {
  const { token = path.startsWith('/api'), ...rest } = init;
  const headers = { ...(token ? { authorization: `Bearer ${TEST_TOKEN}` } : {}), ...(rest.headers as Record<string, string>) };
  const response = await fetch(`${gateway.url}${path}`, { ...rest, headers });
  const text = await response.text();
  seen.push(`${path} ${response.status} ${JSON.stringify([...response.headers])}\n${text}`);
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, text, body };
}
const putSecret = (name: string, value: string | Buffer) =>
  request(`/api/secrets/${name}`, { method: 'PUT', body: typeof value === 'string' ? value : new Uint8Array(value) });

/** `key=value` lines of a reader's or plain's output. */
function facts(text: string): Record<string, string> {
  return Object.fromEntries(
    text.split('\n').flatMap((line) => (line.includes('=') ? [[line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1).trim()]] : [])),
  );
}

/** Copies fixture functions into the clone (replacing what is there) and pushes; git's result. */
async function push(message: string, functions: Record<string, string>) {
  const result = await pushFixtures(repo, message, functions);
  seen.push(result.all ?? '');
  return result;
}

async function startGateway(): Promise<TestGateway> {
  return startTestGateway({ stateDir, functionsDir: join(work, 'initial') });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-secrets-'));
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-secrets-state-'));
  await cp(join(FIXTURES, 'plain'), join(work, 'initial', 'plain'), { recursive: true });
  gateway = await startGateway();
  repo = join(work, 'clone');
  const cloned = await git(work, 'clone', '--quiet', remote(), repo);
  expect(cloned.exitCode, cloned.all).toBe(0);
}, 240_000);
afterAll(async () => {
  await gateway?.close();
  await rm(work, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
});

describe('the secrets API', () => {
  it('needs the deploy token', async () => {
    for (const [path, method] of [
      ['/api/secrets', 'GET'],
      ['/api/secrets/API_TOKEN', 'PUT'],
      ['/api/secrets/API_TOKEN', 'DELETE'],
    ] as const) {
      const { status, body } = await request(path, { method, token: false, ...(method === 'PUT' ? { body: 'x' } : {}) });
      expect(status, `${method} ${path}`).toBe(401);
      expect(body.error.code).toBe('UNAUTHORIZED');
    }
  });

  it('sets a secret and lists it by name and time, never its value', async () => {
    const before = Date.now();
    const { status, body } = await putSecret('API_TOKEN', VALUE);
    expect(status).toBe(200);
    expect(body).toEqual({ name: 'API_TOKEN', setAt: expect.any(String), restarted: [] });
    expect(new Date(body.setAt).getTime()).toBeGreaterThanOrEqual(before - 1000);
    const listed = await request('/api/secrets');
    expect(listed.body).toEqual({ secrets: [{ name: 'API_TOKEN', setAt: body.setAt, usedBy: [] }] });
  });

  it('refuses bad names, empty values and values above 64 KiB with SECRET_INVALID', async () => {
    for (const name of ['lower', '1STARTS_WITH_DIGIT', 'WITH-DASH', 'A'.repeat(129)]) {
      const { status, body } = await putSecret(name, 'x');
      expect(status, name).toBe(400);
      expect(body.error.code).toBe('SECRET_INVALID');
    }
    expect((await putSecret('EMPTY', '')).body.error.code).toBe('SECRET_INVALID');
    const big = await putSecret('BIG', Buffer.alloc(64 * 1024 + 1, 0x61));
    expect([big.status, big.body.error.code]).toEqual([400, 'SECRET_INVALID']);
    // A chunked body (no Content-Length) is bounded as it is read.
    const chunked = await fetch(`${gateway.url}/api/secrets/BIG`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${TEST_TOKEN}` },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 80; i += 1) controller.enqueue(new Uint8Array(1024).fill(0x62));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(400);
    expect(((await chunked.json()) as { error: { code: string } }).error.code).toBe('SECRET_INVALID');
    const exact = await putSecret('EXACT', Buffer.alloc(64 * 1024, 0x63));
    expect(exact.status).toBe(200);
    expect((await request('/api/secrets/EXACT', { method: 'DELETE' })).body).toEqual({ name: 'EXACT', removed: true });
    expect((await request('/api/secrets')).body.secrets.map((s: { name: string }) => s.name)).toEqual(['API_TOKEN']);
  });

  it('answers 404 SECRET_NOT_FOUND to removing a secret that is not set', async () => {
    const { status, body } = await request('/api/secrets/NEVER_SET', { method: 'DELETE' });
    expect([status, body.error.code]).toEqual([404, 'SECRET_NOT_FOUND']);
  });
});

describe('a push', () => {
  it('is refused when a function declares a secret that is not set, naming both and the fix', async () => {
    await mkdir(join(work, 'needs-missing'), { recursive: true });
    await cp(join(FIXTURES, 'plain'), join(work, 'needs-missing'), { recursive: true });
    await writeFile(join(work, 'needs-missing', 'function.json'), JSON.stringify({ packages: ['busybox'], command: ['./plain.sh'], secrets: ['MISSING_ONE'] }));
    const result = await push('needs a missing secret', { plain: join(FIXTURES, 'plain'), needy: join(work, 'needs-missing') });
    expect(result.exitCode, result.all).not.toBe(0);
    expect(result.all).toMatch(/remote: .*functions\/needy: declares the secret MISSING_ONE, which is not set/);
    expect(result.all).toContain('fnix secret set MISSING_ONE');
    const { body } = await request('/api/deployments');
    const latest = body.deployments.at(-1) ?? body.deployments[0];
    const refused = body.deployments.find((d: { status: string; reason?: string }) => d.status === 'refused' && d.reason?.includes('MISSING_ONE'));
    expect(refused, JSON.stringify(latest)).toBeDefined();
    expect(refused.reason).toContain('functions/needy');
    // The functions served are unchanged: needy is not there.
    expect((await request('/fn/needy')).status).toBe(404);
    await git(repo, 'reset', '--quiet', '--hard', 'origin/main');
  });

  it('goes live when every secret its functions declare is set', async () => {
    const result = await push('reader, plain and server', {
      reader: join(FIXTURES, 'reader'),
      plain: join(FIXTURES, 'plain'),
      server: join(FIXTURES, 'server'),
    });
    expect(result.exitCode, result.all).toBe(0);
    const { body } = await request('/api/secrets');
    expect(body.secrets).toEqual([{ name: 'API_TOKEN', setAt: expect.any(String), usedBy: ['reader', 'server'] }]);
  });
});

describe('a function declaring a secret', () => {
  let first: Record<string, string>;

  it('reads it at /run/secrets/<NAME>, mode 0400 and its own uid, in a folder of mode 0700, and as a variable', async () => {
    const { status, text } = await request('/fn/reader');
    expect(status, text).toBe(200);
    first = facts(text);
    expect(first['file_sha']).toBe(sha(VALUE));
    expect(first['file_len']).toBe(String(VALUE.length));
    expect(first['env_sha']).toBe(sha(VALUE));
    const [mode, owner, group] = first['file_stat']!.split(' ');
    expect(mode).toBe('400');
    expect(owner).toBe(first['uid']);
    expect(group).toBe(first['uid']);
    expect(first['uid']).not.toBe('0');
    expect(first['dir_stat']).toBe(`700 ${first['uid']} ${first['uid']}`);
    expect(first['listing']).toBe('API_TOKEN');
  });

  it('finds only its own secret again in the same warm container, whatever the last invocation left there', async () => {
    // This one plants a file in /run/secrets and makes the folder unreadable before it ends.
    const planting = facts((await request('/fn/reader?plant')).text);
    expect(planting['container']).toBe(first['container']);
    const next = await request('/fn/reader');
    expect(next.status, next.text).toBe(200);
    const after = facts(next.text);
    expect(after['container'], 'the same container served it').toBe(first['container']);
    expect(after['listing']).toBe('API_TOKEN');
    expect(after['dir_stat']).toBe(first['dir_stat']);
    expect(after['file_sha']).toBe(sha(VALUE));
  });

  it('fails on its own terms when its command fails, with nothing of the secret in the error', async () => {
    const { status, body } = await request('/fn/reader?fail');
    expect(status).toBe(502);
    expect(body.error.code).toBe('FUNCTION_FAILED');
  });

  it('gets it in a session too', async () => {
    const session = await openSession(gateway.url, '/sessions/reader');
    session.send(0, '');
    const { status } = await session.closed;
    seen.push(session.text(1), session.text(2), JSON.stringify(status));
    expect(status?.exitCode).toBe(0);
    expect(facts(session.text(1))['file_sha']).toBe(sha(VALUE));
  });
});

describe('a function declaring no secret', () => {
  it('sees no /run/secrets/<NAME> and no variable, right after one that did', async () => {
    await request('/fn/reader');
    const { text } = await request('/fn/plain');
    const seenByPlain = facts(text);
    expect(seenByPlain['file']).toBe('absent');
    expect(seenByPlain['listing']).toBe('');
    expect(seenByPlain['env']).toBe('unset');
  });
});

describe('a serve function declaring a secret', () => {
  it('reads it at its start', async () => {
    const { status, body } = await request('/fn/server/secret');
    expect(status).toBe(200);
    expect(body.sha256).toBe(sha(VALUE));
  });
});

describe('rotation', () => {
  it('reaches the next invocation, and restarts the serve instances of functions declaring it, without a push', async () => {
    const before = (await request('/fn/server/secret')).body;
    const deployments = (await request('/api/deployments')).body.deployments.length;
    const { status, body } = await putSecret('API_TOKEN', ROTATED);
    expect(status).toBe(200);
    expect(body.restarted).toEqual(['server']);
    expect(facts((await request('/fn/reader')).text)['file_sha']).toBe(sha(ROTATED));
    const after = (await request('/fn/server/secret')).body;
    expect(after.sha256).toBe(sha(ROTATED));
    expect(after.instance).not.toBe(before.instance);
    expect((await request('/api/deployments')).body.deployments).toHaveLength(deployments);
    expect(gateway.logs.join('\n')).toMatch(/instances restarted.*server/);
  });
});

describe('removal', () => {
  it('is refused with 409 SECRET_IN_USE while functions of the live deployment declare it', async () => {
    const { status, body } = await request('/api/secrets/API_TOKEN', { method: 'DELETE' });
    expect(status).toBe(409);
    expect(body.error.code).toBe('SECRET_IN_USE');
    expect(body.error.functions).toEqual(['reader', 'server']);
    expect(body.error.message).toContain("'reader'");
    expect((await request('/api/secrets')).body.secrets.map((s: { name: string }) => s.name)).toEqual(['API_TOKEN']);
  });

  it('is allowed once no function uses it, and a rollback to a deployment that declares it is then refused', async () => {
    expect((await putSecret('OTHER_TOKEN', 'other-value')).status).toBe(200);
    await mkdir(join(work, 'other'), { recursive: true });
    await cp(join(FIXTURES, 'plain'), join(work, 'other'), { recursive: true });
    await writeFile(join(work, 'other', 'function.json'), JSON.stringify({ packages: ['busybox'], command: ['./plain.sh'], secrets: ['OTHER_TOKEN'] }));
    const withOther = await push('with other', { reader: join(FIXTURES, 'reader'), plain: join(FIXTURES, 'plain'), other: join(work, 'other') });
    expect(withOther.exitCode, withOther.all).toBe(0);
    const usingOther = (await request('/api/deployments')).body.deployments.find((d: { status: string }) => d.status === 'active').id;
    const without = await push('without other', { reader: join(FIXTURES, 'reader'), plain: join(FIXTURES, 'plain'), server: join(FIXTURES, 'server') });
    expect(without.exitCode, without.all).toBe(0);
    expect((await request('/api/secrets/OTHER_TOKEN', { method: 'DELETE' })).body).toEqual({ name: 'OTHER_TOKEN', removed: true });
    const rollback = await request(`/api/deployments/${usingOther}/activate`, { method: 'POST' });
    expect(rollback.body.error.code).toBe('DEPLOYMENT_REFUSED');
    expect(rollback.body.error.message).toContain('OTHER_TOKEN');
    expect(rollback.body.error.message).toContain('fnix secret set OTHER_TOKEN');
    // Still serving what it served.
    expect((await request('/fn/other')).status).toBe(404);
    expect(facts((await request('/fn/reader')).text)['file_sha']).toBe(sha(ROTATED));
  });
});

describe('a restart', () => {
  it('with another key is refused with SECRETS_KEY_INVALID, naming the fix; with its own, keeps the secrets', async () => {
    earlierLogs.push(...gateway.logs);
    await gateway.close();
    const error = await startTestGateway({ stateDir, functionsDir: join(work, 'initial'), secretsKey: randomBytes(32) }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FnixError);
    expect((error as FnixError).code).toBe('SECRETS_KEY_INVALID');
    expect((error as FnixError).message).toContain('FNIX_SECRETS_KEY');
    // The real entry point says so and exits, rather than retrying; a malformed key is refused before that.
    for (const [key, said] of [
      [randomBytes(32).toString('base64'), /SECRETS_KEY_INVALID|does not decrypt|none of its 1 secrets decrypts/],
      ['too-short', /FNIX_SECRETS_KEY is not a secrets key/],
    ] as const) {
      const main = await startMain(
        { FNIX_STATE_DIR: stateDir, FNIX_SECRETS_KEY: key, FNIX_TOKEN: TEST_TOKEN },
        { until: /(fnix could not start|FNIX_SECRETS_KEY is not)/ },
      );
      const result = await main.child;
      expect(result.exitCode, main.output()).not.toBe(0);
      expect(main.output()).toMatch(said);
      expect(main.output()).not.toContain(key);
    }
    gateway = await startGateway();
    expect((await request('/api/secrets')).body.secrets.map((s: { name: string }) => s.name)).toEqual(['API_TOKEN']);
    expect(facts((await request('/fn/reader')).text)['file_sha']).toBe(sha(ROTATED));
    expect((await request('/fn/server/secret')).body.sha256).toBe(sha(ROTATED));
  });
});

describe('the values', () => {
  it('appear nowhere: not in the state folder, the log, any response or git output', async () => {
    // Every remaining path that writes something, once more.
    for (const path of [
      '/healthz',
      '/metrics',
      '/api/functions',
      '/api/functions/reader',
      '/api/functions/server',
      '/api/deployments',
      '/api/secrets',
      '/api/functions/reader/logs?limit=10000',
      '/api/functions/reader/invocations',
      '/api/functions/server/logs?limit=10000',
    ]) {
      await request(path);
    }
    const invocations = (await request('/api/functions/reader/invocations')).body?.invocations ?? [];
    for (const record of invocations.slice(0, 5)) await request(`/api/invocations/${record.id}`);
    await request('/fn/reader?fail');
    const statuses = new Map(seen.map((text) => [text.slice(0, text.indexOf(' ')), Number(text.split(' ')[1])]));
    for (const path of ['/healthz', '/metrics', '/api/functions', '/api/deployments', '/api/secrets', '/api/functions/reader/invocations'])
      expect(statuses.get(path), path).toBe(200);
    // The records hold what the functions wrote (the failed reader's stderr): what is searched below is real.
    expect(invocations.length).toBeGreaterThan(0);
    expect(seen.some((text) => text.startsWith('/api/functions/reader/logs') && text.includes('reader failed on purpose'))).toBe(true);
    // The search finds the value where it is (a control, in a folder of its own).
    const control = await mkdtemp(join(tmpdir(), 'fnix-secrets-control-'));
    await writeFile(join(control, 'bin'), Buffer.concat([Buffer.from([0, 1, 2]), Buffer.from(VALUE), Buffer.from([0])]));
    expect((await execa('grep', ['-r', '-a', '-F', '-l', VALUE, control], { reject: false })).exitCode).toBe(0);
    await rm(control, { recursive: true, force: true });
    for (const value of [VALUE, ROTATED]) {
      const grep = await execa('grep', ['-r', '-a', '-F', '-l', value, stateDir], { reject: false });
      expect(grep.exitCode, `files holding the value: ${grep.stdout}`).toBe(1);
      expect([...earlierLogs, ...gateway.logs].join('\n')).not.toContain(value);
      const where = seen.findIndex((text) => text.includes(value));
      expect(where, `response ${seen[where]?.slice(0, 200)}`).toBe(-1);
    }
    expect(seen.length).toBeGreaterThan(40);
  });
});
