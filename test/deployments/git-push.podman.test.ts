/**
 * @module
 * Deploys by git push, driven by the stock git CLI against a running gateway: the first import, pushes
 * that go live, pushes that are refused (with the message in git's output, and the old version still
 * answering), branches, force pushes, two pushes at once, rollback through the admin API, a restart, and
 * the token.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeClosure } from '../../runtime/nix/closure.ts';
import { startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { GIT_ENV, git } from '../helpers/git.ts';
import { scrape } from '../helpers/metrics.ts';
import { outputMatches, pidsWithEnv, waitUntil } from '../helpers/processes.ts';

const EXTRA_SET = fileURLToPath(new URL('../runtime/nix/fixtures/extra-set', import.meta.url));
let gateway: TestGateway;
let stateDir: string;
let work: string;

const remote = (token = TEST_TOKEN) => `${gateway.url.replace('http://', `http://fnix:${token}@`)}/git/functions.git`;
const invoke = async (name: string) => (await fetch(`${gateway.url}/fn/${name}`)).text();
const api = async (path: string, init: RequestInit = {}) => {
  const response = await fetch(`${gateway.url}/api${path}`, { ...init, headers: { authorization: `Bearer ${TEST_TOKEN}`, ...init.headers } });
  return { status: response.status, body: (await response.json()) as any };
};

/** Writes a function `functions/<name>/` into `dir` that prints `text`. */
async function writeFunction(dir: string, name: string, text: string, manifest: object = {}): Promise<void> {
  const folder = join(dir, 'functions', name);
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'function.json'), JSON.stringify({ packages: ['busybox'], command: ['./main.sh'], ...manifest }));
  await writeFile(join(folder, 'main.sh'), `#!/usr/bin/env sh\necho '${text}'\n`);
  await chmod(join(folder, 'main.sh'), 0o755);
}

/** A fresh clone of the deployed repository. */
async function clone(): Promise<string> {
  const dir = await mkdtemp(join(work, 'clone-'));
  const result = await git(work, 'clone', '--quiet', remote(), dir);
  expect(result.exitCode, result.all).toBe(0);
  return dir;
}

/** Commits everything in `dir` and pushes main; resolves with git's exit code and output. */
async function commitAndPush(dir: string, message: string, ...pushArgs: string[]) {
  await git(dir, 'add', '--all');
  await git(dir, 'commit', '--quiet', '-m', message);
  return git(dir, 'push', 'origin', 'main', ...pushArgs);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-push-'));
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-deploy-state-'));
  const initial = join(work, 'initial');
  await writeFunction(initial, 'greet', 'v1');
  gateway = await startTestGateway({ stateDir, functionsDir: join(initial, 'functions'), packages: EXTRA_SET });
});
afterAll(async () => {
  await gateway?.close();
  await rm(work, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
});

describe('the first start', () => {
  it('imports the functions folder as the first commit and deployment', async () => {
    expect(await invoke('greet')).toBe('v1\n');
    const { body } = await api('/deployments');
    expect(body.deployments).toHaveLength(1);
    expect(body.deployments[0]).toMatchObject({ status: 'active', source: 'import' });
    const dir = await clone();
    expect((await git(dir, 'log', '--format=%s')).stdout).toContain('Functions imported from');
    // Each activated deployment's commit is kept by a ref of fnix's own, which clients never see.
    const own = await execa('git', ['--git-dir', gateway.deployments.repository.gitDir, 'for-each-ref', '--format=%(refname)', 'refs/fnix/'], { env: GIT_ENV });
    expect(own.stdout).toBe(`refs/fnix/deployments/${body.deployments[0].id}`);
    expect((await git(dir, 'ls-remote', 'origin')).stdout).not.toContain('refs/fnix');
  });
});

describe('a push to main', () => {
  it('deploys: the new code answers, and git shows the progress', async () => {
    const dir = await clone();
    await writeFunction(dir, 'greet', 'v2');
    await writeFunction(dir, 'added', 'new function');
    const pushed = await commitAndPush(dir, 'v2');
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(pushed.all).toContain('remote: functions/greet: building...');
    expect(pushed.all).toMatch(/remote: functions\/greet: built in [\d.]+ s, closure 1 path, [\d.]+ MiB \(packages: busybox \/nix\/store\//);
    expect(pushed.all).toMatch(/remote: functions\/added: started in a container/);
    expect(pushed.all).toMatch(/remote: deployment d-[\w-]+ is live: added, greet/);
    expect(await invoke('greet')).toBe('v2\n');
    expect(await invoke('added')).toBe('new function\n');
  });

  it("prints each function's closure size, as the admin API measures it", async () => {
    const dir = await clone();
    await writeFunction(dir, 'tools', 'tools', { packages: ['busybox', 'bash', 'gojq'] });
    await writeFunction(dir, 'multi', 'multi', { packages: ['multi'], command: ['multi'] }); // bash is in its closure
    const pushed = await commitAndPush(dir, 'closures');
    expect(pushed.exitCode, pushed.all).toBe(0);
    for (const name of ['greet', 'tools', 'multi']) {
      const { closure, storePaths } = (await api(`/functions/${name}`)).body;
      expect(closure.count, name).toBeGreaterThan(0);
      const line = pushed.all.split('\n').find((l: string) => l.startsWith(`remote: functions/${name}: built in`));
      expect(line, name).toContain(`, closure ${describeClosure(closure)} (packages: `);
      expect(line).toContain(storePaths[0]);
    }
    expect(pushed.all).toMatch(/remote: functions\/tools: built in [\d.]+ s, closure 3 paths, /);
    expect(pushed.all).toMatch(/remote: functions\/multi: built in [\d.]+ s, closure 2 paths, /);
    // Back to the functions the tests below expect.
    await rm(join(dir, 'functions/tools'), { recursive: true });
    await rm(join(dir, 'functions/multi'), { recursive: true });
    expect((await commitAndPush(dir, 'no closures')).exitCode).toBe(0);
  });

  it('lets invocations in flight finish on the version they started with', async () => {
    const dir = await clone();
    const slow = (text: string) =>
      writeFunction(dir, 'slow', text).then(() => writeFile(join(dir, 'functions/slow/main.sh'), `#!/usr/bin/env sh\nsleep 1.5\necho '${text}'\n`));
    await slow('old');
    expect((await commitAndPush(dir, 'slow old')).exitCode).toBe(0);
    const inFlight = invoke('slow'); // started on 'old'
    await waitUntil(async () => (await pidsWithEnv('FNIX_FUNCTION', 'slow')).length > 0, 5000, "'old' to run");
    await slow('new');
    const pushed = await commitAndPush(dir, 'slow new');
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(await inFlight).toBe('old\n');
    expect(await invoke('slow')).toBe('new\n');
  });

  it('refuses a push over FNIX_MAX_PUSH (receive.maxInputSize)', async () => {
    const dir = await clone();
    await writeFile(join(dir, 'functions/greet/blob.bin'), randomBytes(17 * 1024 * 1024)); // the test gateway takes 16 MiB
    const pushed = await commitAndPush(dir, 'too big');
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toMatch(/maximum allowed size|maxInputSize|unpack-objects abnormal exit|index-pack/);
    expect(await invoke('greet')).toBe('v2\n');
  });

  it('removes the functions the new commit no longer has', async () => {
    const dir = await clone();
    await rm(join(dir, 'functions', 'added'), { recursive: true });
    await rm(join(dir, 'functions', 'slow'), { recursive: true });
    expect((await commitAndPush(dir, 'remove added')).exitCode).toBe(0);
    expect((await fetch(`${gateway.url}/fn/added`)).status).toBe(404);
    expect(await invoke('greet')).toBe('v2\n');
  });
});

describe('a refused push', () => {
  const refusals: Array<[string, (dir: string) => Promise<void>, RegExp]> = [
    [
      'a broken manifest',
      (dir) => writeFile(join(dir, 'functions/greet/function.json'), '{"packages":["busybox"],"command":["./main.sh"],"timeoutMs":"soon"}'),
      /functions\/greet\/function\.json: field 'timeoutMs' \(value "soon"\)/,
    ],
    ['an unknown package', (dir) => writeFunction(dir, 'greet', 'x', { packages: ['no-such-package'] }), /no-such-package/],
    ['a failing build', (dir) => writeFunction(dir, 'greet', 'x', { packages: ['busybox', 'broken'] }), /broken-last-line/],
    ['a command that does not start', (dir) => writeFunction(dir, 'greet', 'x', { packages: ['gojq'] }), /functions\/greet: it did not start/],
    [
      'a symlink that leaves the function',
      (dir) => symlink('../../../etc/passwd', join(dir, 'functions/greet/passwd')),
      /functions\/greet\/passwd: is a symbolic link to "..\/..\/..\/etc\/passwd", which leads outside functions\/greet\//,
    ],
    [
      'a submodule',
      async (dir) => {
        // A repository inside the work tree: `git add` records it as a gitlink, which is a submodule.
        const vendor = join(dir, 'functions/greet/vendor');
        await git(dir, 'init', '--quiet', vendor);
        await writeFile(join(vendor, 'lib.sh'), 'echo lib\n');
        await git(vendor, 'add', 'lib.sh');
        await git(vendor, 'commit', '--quiet', '-m', 'vendored');
      },
      /functions\/greet\/vendor: is a submodule/,
    ],
  ];
  it.each(refusals)('refuses %s, says why in the remote: lines, and the old version keeps answering', async (_what, breakIt, message) => {
    const dir = await clone();
    await breakIt(dir);
    const pushed = await commitAndPush(dir, 'break it');
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toMatch(message);
    expect(pushed.all).toContain('pre-receive hook declined');
    expect(pushed.all).toContain('the functions being served are unchanged');
    expect(await invoke('greet')).toBe('v2\n');
    // main did not move: a fresh clone has the old commit.
    const fresh = await clone();
    expect((await git(fresh, 'log', '-1', '--format=%s')).stdout).toBe('remove added');
  });

  it('reports every problem of a push, not only the first', async () => {
    const dir = await clone();
    await writeFunction(dir, 'one', 'x', { packages: ['no-such-package'] });
    await writeFunction(dir, 'two', 'x', { bogus: true });
    const pushed = await commitAndPush(dir, 'two problems');
    expect(pushed.all).toContain('no-such-package');
    expect(pushed.all).toMatch(/functions\/two\/function\.json: .*bogus/);
  });

  it('records refused deployments in the history, with the reason', async () => {
    const { body } = await api('/deployments');
    const refused = body.deployments.filter((d: any) => d.status === 'refused');
    expect(refused.length).toBeGreaterThanOrEqual(6);
    expect(refused[0].reason).toBeTruthy();
    const metrics = await scrape(gateway.url);
    expect(metrics.value('fnix_deployments_total', { outcome: 'refused' })).toBe(refused.length);
    expect(metrics.value('fnix_deployments_total', { outcome: 'activated' })).toBeGreaterThanOrEqual(4);
  });
});

describe('branches and history', () => {
  it('keeps a push to another branch without deploying it', async () => {
    const dir = await clone();
    await writeFunction(dir, 'greet', 'branch');
    await git(dir, 'checkout', '--quiet', '-b', 'feature');
    await git(dir, 'add', '--all');
    await git(dir, 'commit', '--quiet', '-m', 'feature');
    const pushed = await git(dir, 'push', 'origin', 'feature');
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(pushed.all).toContain('refs/heads/feature: kept, not deployed (only main is deployed)');
    expect(await invoke('greet')).toBe('v2\n');
  });

  it('deploys a forced non-fast-forward push like any other', async () => {
    const dir = await clone();
    await git(dir, 'reset', '--quiet', '--hard', 'HEAD~1');
    await writeFunction(dir, 'greet', 'rewritten');
    await git(dir, 'add', '--all');
    await git(dir, 'commit', '--quiet', '-m', 'rewritten');
    const plain = await git(dir, 'push', 'origin', 'main');
    expect(plain.exitCode).not.toBe(0); // git refuses a non-fast-forward without --force
    const forced = await git(dir, 'push', '--force', 'origin', 'main');
    expect(forced.exitCode, forced.all).toBe(0);
    expect(await invoke('greet')).toBe('rewritten\n');
  });

  it('makes a second push wait for the first, then refuses it if main moved meanwhile', async () => {
    const [a, b] = await Promise.all([clone(), clone()]);
    // a's checks take a while: its 'slow' function runs the full 2 s of its smoke check.
    await writeFunction(a, 'greet', 'from slow a');
    await mkdir(join(a, 'functions/slow'), { recursive: true });
    await writeFile(join(a, 'functions/slow/function.json'), JSON.stringify({ packages: ['busybox'], command: ['busybox', 'sleep', '30'] }));
    await writeFunction(b, 'greet', 'from b');
    for (const dir of [a, b]) {
      await git(dir, 'add', '--all');
      await git(dir, 'commit', '--quiet', '-m', 'racing');
    }
    const pushA = git(a, 'push', 'origin', 'main');
    await outputMatches(pushA, /remote: deployment d-\S+: commit/, 30_000); // a holds the lock, in its checks
    const pushB = await git(b, 'push', 'origin', 'main');
    expect((await pushA).exitCode).toBe(0);
    expect(pushB.exitCode).not.toBe(0);
    expect(pushB.all).toMatch(/waiting for the push of [0-9a-f]{12} to finish/);
    expect(pushB.all).toMatch(/main moved to [0-9a-f]{12} while this push waited; fetch, merge or rebase, and push again/);
    expect(await invoke('greet')).toBe('from slow a\n');
    // Back to one function, for the tests below.
    const dir = await clone();
    await rm(join(dir, 'functions/slow'), { recursive: true });
    expect((await commitAndPush(dir, 'no slow')).exitCode).toBe(0);
  });

  it('releases the lock when a pushing client disconnects during the checks', async () => {
    const dir = await clone();
    await mkdir(join(dir, 'functions/slow'), { recursive: true });
    await writeFile(join(dir, 'functions/slow/function.json'), JSON.stringify({ packages: ['busybox'], command: ['busybox', 'sleep', '30'] }));
    await git(dir, 'add', '--all');
    await git(dir, 'commit', '--quiet', '-m', 'abandoned');
    const push = execa('git', ['push', 'origin', 'main'], { cwd: dir, env: GIT_ENV, reject: false, all: true });
    await outputMatches(push, /remote: functions\/slow: building/, 30_000); // in its checks, holding the lock
    push.kill('SIGKILL');
    await push;
    // The next push goes through at once, rather than waiting for a lock that nobody will release.
    const next = await clone();
    await writeFunction(next, 'greet', 'after the abandoned push');
    const began = performance.now();
    const pushed = await commitAndPush(next, 'after');
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(performance.now() - began).toBeLessThan(30_000);
    expect(await invoke('greet')).toBe('after the abandoned push\n');
  });

  it('refuses to delete main', async () => {
    const dir = await clone();
    const deleted = await git(dir, 'push', 'origin', ':main');
    expect(deleted.exitCode).not.toBe(0);
    expect(deleted.all).toContain('main cannot be deleted');
    expect(await invoke('greet')).toBe('after the abandoned push\n');
  });

  it('serializes two pushes at once: one deploys, the other is refused and changes nothing', async () => {
    const [a, b] = await Promise.all([clone(), clone()]);
    await writeFunction(a, 'greet', 'from a');
    await writeFunction(b, 'greet', 'from b');
    for (const dir of [a, b]) {
      await git(dir, 'add', '--all');
      await git(dir, 'commit', '--quiet', '-m', `push from ${dir === a ? 'a' : 'b'}`);
    }
    const [pushA, pushB] = await Promise.all([git(a, 'push', 'origin', 'main'), git(b, 'push', 'origin', 'main')]);
    const winners = [pushA, pushB].filter((p) => p.exitCode === 0);
    expect(winners).toHaveLength(1);
    const loser = winners[0] === pushA ? pushB : pushA;
    expect(loser.all).toMatch(/main moved|fetch first|non-fast-forward|failed to lock|rejected/);
    expect(await invoke('greet')).toBe(winners[0] === pushA ? 'from a\n' : 'from b\n');
    const { body } = await api('/deployments');
    expect(body.deployments.filter((d: any) => d.status === 'active')).toHaveLength(1);
  });
});

describe('the admin API', () => {
  it('lists the functions with their deployment, commit, packages, store paths, command and limits', async () => {
    const { status, body } = await api('/functions');
    expect(status).toBe(200);
    const greet = body.functions.find((f: any) => f.name === 'greet');
    expect(greet).toMatchObject({ status: 'ready', packages: ['busybox'], command: ['./main.sh'], limits: { timeoutMs: 30000, memoryMb: 256 } });
    expect(greet.deployment).toMatch(/^d-/);
    expect(greet.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(greet.storePaths[0]).toMatch(/^\/nix\/store\/\w{32}-busybox/);
    expect(greet.closure).toEqual({ count: 1, totalBytes: expect.any(Number) });
    expect(body.closure.count).toBe(1); // every function there holds the same busybox
    expect((await api('/functions/greet')).body.name).toBe('greet');
    expect((await api('/functions/nope')).status).toBe(404);
  });

  it('rolls back to an earlier deployment atomically, and forward again', async () => {
    const { body } = await api('/deployments');
    const active = body.deployments.find((d: any) => d.status === 'active');
    const first = body.deployments.at(-1);
    expect(first.source).toBe('import');
    const back = await api(`/deployments/${first.id}/activate`, { method: 'POST' });
    expect(back.status).toBe(200);
    expect(back.body.status).toBe('active');
    expect(await invoke('greet')).toBe('v1\n');
    const forward = await api(`/deployments/${active.id}/activate`, { method: 'POST' });
    expect(forward.status).toBe(200);
    expect(await invoke('greet')).not.toBe('v1\n');
    await api(`/deployments/${first.id}/activate`, { method: 'POST' }); // v1, for the restart below
  });

  it('refuses to activate a refused or unknown deployment', async () => {
    const { body } = await api('/deployments');
    const refused = body.deployments.find((d: any) => d.status === 'refused');
    const attempt = await api(`/deployments/${refused.id}/activate`, { method: 'POST' });
    expect(attempt.status).toBe(409);
    expect(attempt.body.error.code).toBe('DEPLOYMENT_REFUSED');
    expect((await api('/deployments/d-nope/activate', { method: 'POST' })).body.error.code).toBe('DEPLOYMENT_NOT_FOUND');
  });
});

describe('the token', () => {
  it('is required by clone, fetch and push, and by the admin API', async () => {
    for (const path of ['/info/refs?service=git-upload-pack', '/info/refs?service=git-receive-pack', '/git-receive-pack']) {
      const response = await fetch(`${gateway.url}/git/functions.git${path}`, { method: path.startsWith('/info') ? 'GET' : 'POST' });
      expect(response.status, path).toBe(401);
      expect(response.headers.get('www-authenticate')).toContain('Basic');
      expect(((await response.json()) as any).error.code).toBe('UNAUTHORIZED');
    }
    const wrong = await git(work, 'clone', '--quiet', remote('wrong-token-0123456789'), join(work, 'denied'));
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.all).toMatch(/Authentication failed|401/);
    const noToken = await fetch(`${gateway.url}/api/deployments`);
    expect(noToken.status).toBe(401);
    const badToken = await fetch(`${gateway.url}/api/deployments`, { headers: { authorization: 'Bearer nope' } });
    expect(badToken.status).toBe(401);
  });

  it('is never taken from a client header as REMOTE_USER', async () => {
    const wrong = `Basic ${Buffer.from('fnix:wrong-token-0123456789').toString('base64')}`;
    const response = await fetch(`${gateway.url}/git/functions.git/info/refs?service=git-receive-pack`, {
      headers: { authorization: wrong, 'remote-user': 'fnix', 'x-remote-user': 'fnix', 'auth-user': 'fnix' },
    });
    expect(response.status).toBe(401);
  });

  it('refuses git push with a wrong token', async () => {
    const dir = await clone();
    await writeFunction(dir, 'greet', 'intruder');
    await git(dir, 'add', '--all');
    await git(dir, 'commit', '--quiet', '-m', 'intruder');
    const pushed = await git(dir, 'push', remote('wrong-token-0123456789'), 'main');
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toMatch(/Authentication failed|401/);
    expect(await invoke('greet')).not.toBe('intruder\n');
  });
});

describe('a restart', () => {
  it('serves the last activated deployment, not the functions folder', async () => {
    await gateway.close();
    const other = join(work, 'other');
    await writeFunction(other, 'greet', 'from the folder');
    gateway = await startTestGateway({ stateDir, functionsDir: join(other, 'functions'), packages: EXTRA_SET });
    expect(await invoke('greet')).toBe('v1\n'); // the rollback above
  });
});
