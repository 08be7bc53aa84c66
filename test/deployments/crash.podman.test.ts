/**
 * @module
 * `kill -9` of the real gateway (gateway/main.ts) at several moments of a push: after each restart it
 * serves exactly the deployment that was last activated, and the history reads whole.
 */
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { INSTANCE_LABEL, instanceOf } from '../../runtime/container/launcher.ts';
import { GIT_ENV } from '../helpers/git.ts';
import { startMain, type MainProcess } from '../helpers/main-process.ts';
import { waitUntil } from '../helpers/processes.ts';

const TOKEN = 'crash-test-token-0123456789';

const work = await mkdtemp(join(tmpdir(), 'fnix-crash-'));
const stateDir = join(work, 'state');
let gateway: MainProcess | undefined;

async function writeGreet(dir: string, text: string): Promise<void> {
  const folder = join(dir, 'functions', 'greet');
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, 'function.json'), JSON.stringify({ packages: ['busybox'], command: ['./main.sh'] }));
  await writeFile(join(folder, 'main.sh'), `#!/usr/bin/env sh\necho '${text}'\n`);
  await chmod(join(folder, 'main.sh'), 0o755);
  // A function whose smoke check runs its full 2 s: a push spends a while in its checks.
  const slow = join(dir, 'functions', 'slow');
  await mkdir(slow, { recursive: true });
  await writeFile(join(slow, 'function.json'), JSON.stringify({ packages: ['busybox'], command: ['busybox', 'sleep', '30'] }));
}

function start(): Promise<MainProcess> {
  return startMain({ FNIX_STATE_DIR: stateDir, FNIX_POOL_SIZE: '1', FNIX_TOKEN: TOKEN, FNIX_FUNCTIONS_DIR: join(work, 'initial', 'functions') });
}

async function served(url: string): Promise<{ text: string; activeCommit: string }> {
  const text = await (await fetch(`${url}/fn/greet`)).text();
  const { deployments } = (await (await fetch(`${url}/api/deployments`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as any;
  const active = deployments.find((d: any) => d.status === 'active');
  return { text, activeCommit: active.commit };
}

afterAll(async () => {
  if (gateway && gateway.child.exitCode === null) gateway.child.kill('SIGKILL');
  await gateway?.child;
  await rm(work, { recursive: true, force: true });
});

describe('kill -9 during a push', () => {
  it('serves the last activated deployment after every restart', async () => {
    await writeGreet(join(work, 'initial'), 'v0');
    gateway = await start();
    expect((await served(gateway.url)).text).toBe('v0\n');
    const clone = join(work, 'clone');
    const remote = `${gateway.url.replace('http://', `http://fnix:${TOKEN}@`)}/git/functions.git`;
    await execa('git', ['clone', '--quiet', remote, clone], { env: GIT_ENV });

    const moments = ['deployment d-', 'functions/greet: built', 'passed its checks', 'is live'];
    for (const [round, moment] of moments.entries()) {
      const text = `v${round + 1}`;
      await writeGreet(clone, text);
      await execa('git', ['add', '--all'], { cwd: clone, env: GIT_ENV });
      await execa('git', ['commit', '--quiet', '-m', text], { cwd: clone, env: GIT_ENV });
      const url = `${gateway.url.replace('http://', `http://fnix:${TOKEN}@`)}/git/functions.git`;
      const push = execa('git', ['push', '--force', url, 'HEAD:main'], { cwd: clone, env: GIT_ENV, reject: false, all: true });
      let output = '';
      push.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      await waitUntil(() => output.includes(moment) || push.exitCode !== null, 30_000, `"${moment}" in the push's output`);
      gateway.child.kill('SIGKILL');
      await gateway.child;
      await push;

      gateway = await start();
      const { text: answer, activeCommit } = await served(gateway.url);
      const pushed = (await execa('git', ['rev-parse', 'HEAD'], { cwd: clone })).stdout.trim();
      // Whichever deployment `current` names is the one that answers: the new one only if it went live.
      if (activeCommit === pushed) expect(answer).toBe(`${text}\n`);
      else expect(answer).not.toBe(`${text}\n`);
      if (moment === 'deployment d-' || moment === 'functions/greet: built') expect(activeCommit).not.toBe(pushed);
      if (moment === 'is live') expect(activeCommit).toBe(pushed);
    }
    // The containers the killed gateways left were removed by the next start; the last one removes its own.
    gateway.child.kill('SIGTERM');
    expect((await gateway.child).exitCode).toBe(0);
    const { stdout } = await execa('podman', ['ps', '--all', '--filter', `label=${INSTANCE_LABEL}=${instanceOf(stateDir)}`, '--format', '{{.Names}}']);
    expect(stdout).toBe('');
  }, 240_000);
});

describe('a deployment whose commit is gone', () => {
  it('cannot be activated, and does not stop the next start', async () => {
    await writeGreet(join(work, 'initial'), 'v0'); // the first start's folder, when this runs alone
    gateway = await start();
    const before = await served(gateway.url);
    const headers = { authorization: `Bearer ${TOKEN}` };
    const { deployments } = (await (await fetch(`${gateway.url}/api/deployments`, { headers })).json()) as any;
    // A deployment that passed its checks but whose commit git no longer has: a push that died after its
    // checks, or a force-push followed by a `git gc` by hand.
    const lost = { ...deployments[0], id: 'd-20260101-lostlost', commit: 'f'.repeat(40), status: undefined, activations: [] };
    gateway.child.kill('SIGTERM');
    await gateway.child;
    await writeFile(join(stateDir, 'deployments', `${lost.id}.json`), JSON.stringify({ ...lost, result: 'ready' }));
    gateway = await start();
    const activation = await fetch(`${gateway.url}/api/deployments/${lost.id}/activate`, { method: 'POST', headers });
    expect(activation.status).toBe(409);
    expect(((await activation.json()) as any).error.message).toContain('is not in the repository');
    expect(await served(gateway.url)).toEqual(before);

    // Named active in `current`, it cannot be served again: fnix starts anyway, and deploys main.
    gateway.child.kill('SIGTERM');
    await gateway.child;
    await writeFile(join(stateDir, 'deployments', 'current'), `${JSON.stringify({ id: lost.id, activatedAt: new Date().toISOString() })}\n`);
    gateway = await start();
    expect(gateway.output()).toContain('the active deployment could not be served again');
    expect((await served(gateway.url)).text).toBe(before.text);
    gateway.child.kill('SIGTERM');
    expect((await gateway.child).exitCode).toBe(0);
  }, 120_000);
});
