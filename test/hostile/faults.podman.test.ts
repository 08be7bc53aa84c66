/**
 * @module
 * Host faults: a function's container killed from outside mid-invocation, the gateway killed with
 * SIGKILL while invocations run and started again, and a graceful SIGTERM drain, against the real
 * entry point (gateway/main.ts) where the process itself is what fails.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INSTANCE_LABEL, instanceOf } from '../../runtime/container/launcher.ts';
import { EXAMPLES_DIR, functionsFrom, startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { LISTENING, startMain, type MainProcess } from '../helpers/main-process.ts';
import { containerRunning, pidsWithEnv, waitUntil } from '../helpers/processes.ts';
import { alongside, HOSTILE_DIR, report } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TOKEN = 'faults-test-token-0123456789';

describe('a container killed from outside', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    // Room for the warm pool beside the idle container each function's deploy check leaves.
    gateway = await startTestGateway({ functionsDir: await functionsFrom(EXAMPLES_DIR, HOSTILE_DIR), poolSize: 2, maxContainers: 32 });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it.each([['podman kill'], ['podman rm -f']])('fails the request promptly with CONTAINER_LOST after `%s`, and the pool refills', async (how) => {
    const hello = await alongside(gateway.url);
    const pending = fetch(`${gateway.url}/fn/long-sleep`); // would run for 60 s (timeoutMs 30 s)
    let container: string | undefined;
    await waitUntil(
      async () => {
        container = await containerRunning('long-sleep');
        return container !== undefined;
      },
      5000,
      'the spinning container',
    );
    const killedAt = performance.now();
    await execa('podman', how === 'podman kill' ? ['kill', container!] : ['rm', '-f', '-t', '0', container!]);
    const response = await pending;
    const failedAfter = performance.now() - killedAt;
    const body = (await response.json()) as any;
    expect(response.status).toBe(502);
    expect(body.error.code).toBe('CONTAINER_LOST');
    expect(failedAfter).toBeLessThan(2000); // promptly, not at its 30 s timeout
    await waitUntil(() => gateway.runtime.pool.stats().warm >= 2, 10_000, 'the pool to refill');
    const figures = await hello.stop();
    expect(figures.failures).toBe(0);
    await report(`container killed from outside (${how})`, {
      status: 502,
      code: 'CONTAINER_LOST',
      failedAfterMs: Math.round(failedAfter),
      poolRefilled: true,
      hello: figures,
    });
  });
});

describe('the gateway process', () => {
  const work = { dir: '' };
  let main: MainProcess | undefined;
  beforeAll(async () => {
    work.dir = await mkdtemp(join(tmpdir(), 'fnix-faults-'));
  });
  afterAll(async () => {
    if (main && main.child.exitCode === null) main.child.kill('SIGKILL');
    await main?.child;
    await rm(work.dir, { recursive: true, force: true });
  });

  async function start(): Promise<string> {
    main = await startMain({
      FNIX_STATE_DIR: join(work.dir, 'state'),
      FNIX_POOL_SIZE: '2',
      FNIX_TOKEN: TOKEN,
      FNIX_FUNCTIONS_DIR: await functionsFrom(EXAMPLES_DIR, HOSTILE_DIR),
      FNIX_SHUTDOWN_GRACE_MS: '5000',
    });
    return main.url;
  }
  const containers = async () =>
    (await execa('podman', ['ps', '--all', '--filter', `label=${INSTANCE_LABEL}=${instanceOf(join(work.dir, 'state'))}`, '--format', '{{.Names}}'])).stdout
      .split('\n')
      .filter(Boolean);

  it('after SIGKILL with invocations running, starts again: no old container left, the deployment intact', async () => {
    const url = await start();
    const deployments = async (base: string) =>
      ((await (await fetch(`${base}/api/deployments`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as any).deployments;
    const before = await deployments(url);
    const running = Array.from({ length: 3 }, () =>
      fetch(`${url}/fn/long-sleep`).then(
        () => 'answered',
        () => 'failed',
      ),
    );
    const invocations = async () => {
      const ids = new Set<string>();
      for (const pid of await pidsWithEnv('FNIX_FUNCTION', 'long-sleep')) {
        const match = /FNIX_INVOCATION_ID=([^\0]+)/.exec(await readFile(`/proc/${pid}/environ`, 'latin1').catch(() => ''));
        if (match) ids.add(match[1]!);
      }
      return ids.size;
    };
    await waitUntil(async () => (await invocations()) >= 3, 15_000, 'three invocations to run');
    const oldContainers = await containers();
    expect(oldContainers.length).toBeGreaterThanOrEqual(3);
    main!.child.kill('SIGKILL');
    await main!.child;
    expect(await Promise.all(running)).toEqual(['failed', 'failed', 'failed']); // they were running
    const restartedAt = performance.now();
    const again = await start();
    const restartMs = performance.now() - restartedAt;
    const left = (await containers()).filter((name) => oldContainers.includes(name));
    expect(left).toEqual([]);
    expect(await (await fetch(`${again}/fn/hello`)).text()).toBe('Hello, world! This is fnix.\n');
    const after = await deployments(again);
    expect(after.map((d: any) => [d.id, d.status])).toEqual(before.map((d: any) => [d.id, d.status]));
    await report('gateway killed with SIGKILL, then started again', { oldContainersLeft: 0, deployments: 'intact', restartToServingMs: Math.round(restartMs) });
  });

  it('drains on SIGTERM: stops accepting, lets running invocations finish, removes every container', async () => {
    const url = main && main.child.exitCode === null ? main.url : await start();
    const running = fetch(`${url}/fn/sleeper`).then(async (r) => ({ status: r.status, body: await r.text() }));
    await waitUntil(async () => (await pidsWithEnv('FNIX_FUNCTION', 'sleeper')).length >= 1, 5000, 'the invocation to run');
    const began = performance.now();
    main!.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    const refused = await fetch(`${url}/fn/hello`).then(
      (r) => r.status,
      () => 'connection refused',
    );
    const finished = await running;
    const result = await main!.child;
    const drainMs = performance.now() - began;
    expect(finished).toEqual({ status: 200, body: 'slept\n' });
    expect(drainMs).toBeGreaterThan(1500); // it waited for the 3 s invocation
    expect([503, 'connection refused']).toContain(refused);
    expect(result.exitCode).toBe(0);
    expect(await containers()).toEqual([]);
    await report('SIGTERM', { runningInvocation: 'finished (200)', newRequest: refused, containersLeft: 0, drainMs: Math.round(drainMs) });
  });
});

describe('podman or nix failing at start', () => {
  const fails = (tool: string) => `#!/bin/sh\necho "${tool}: simulated failure" >&2\nexit 125\n`;
  // podman itself works (info, ps, rm), but no container starts: the OCI runtime is broken, say.
  const runFails = `#!/bin/sh\ncase " $* " in *" run --detach "*) echo "podman: simulated failure" >&2; exit 125;; esac\nexec /usr/bin/podman "$@"\n`;
  it.each([
    ['podman', 'podman', fails('podman'), 'podman does not work'],
    ['nix-build', 'nix-build', fails('nix-build'), 'nix does not work'],
    ['podman run', 'podman', runFails, 'no container could be started'],
  ])(
    'with %s failing, the gateway starts anyway, says why, answers 503, and serves once it works',
    async (label, tool, script, cause) => {
      const dir = await mkdtemp(join(tmpdir(), 'fnix-broken-'));
      const fake = join(dir, 'bin');
      await mkdir(fake);
      // A tool that fails, ahead of the real one on PATH; removing it is the repair.
      await writeFile(join(fake, tool), script, { mode: 0o755 });
      const gateway = await startMain(
        {
          PATH: `${fake}:${process.env['PATH']}`,
          FNIX_STATE_DIR: join(dir, 'state'),
          FNIX_POOL_SIZE: '1',
          FNIX_TOKEN: TOKEN,
          FNIX_FUNCTIONS_DIR: join(ROOT, 'functions'),
        },
        { until: LISTENING, timeoutMs: 60_000 },
      );
      const { url } = gateway;
      const output = () => gateway.output();
      try {
        await waitUntil(() => output().includes('cannot serve functions yet'), 30_000, 'the cause in the log');
        // No crash loop: it tries again, and stays up.
        await waitUntil(() => output().split('cannot serve functions yet').length > 2, 15_000, 'a second attempt');
        expect(gateway.child.exitCode).toBeNull();
        const health = await fetch(`${url}/healthz`);
        const healthBody = (await health.json()) as any;
        expect(health.status).toBe(503);
        expect(healthBody.error.code).toBe('RUNTIME_UNAVAILABLE');
        expect(healthBody.error.message).toContain(cause);
        const invocation = await fetch(`${url}/fn/hello`);
        expect(invocation.status).toBe(503);
        expect(invocation.headers.get('retry-after')).toBeTruthy();
        expect(invocation.headers.get('x-fnix-invocation-id')).toMatch(/^[\w-]{21}$/);
        expect(((await invocation.json()) as any).error.message).toContain('simulated failure');
        // Repaired: it starts serving on its own.
        await rm(join(fake, tool));
        const repairedAt = performance.now();
        await waitUntil(async () => (await fetch(`${url}/fn/hello`)).status === 200, 60_000, 'the gateway to serve after the repair');
        await report(`${label} failing at start`, {
          healthz: 503,
          invocations: '503 RUNTIME_UNAVAILABLE naming the cause',
          crashLoop: 'none',
          servingAfterRepairMs: Math.round(performance.now() - repairedAt),
        });
        gateway.child.kill('SIGTERM');
        expect((await gateway.child).exitCode).toBe(0);
      } finally {
        if (gateway.child.exitCode === null) gateway.child.kill('SIGKILL');
        await gateway.child;
        await rm(dir, { recursive: true, force: true });
      }
    },
    150_000,
  );
});
