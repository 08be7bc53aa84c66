/**
 * @module
 * The pool against real Podman: cold starts, warm reuse, the capacity bound and its queue, leftovers of
 * an earlier run, one fnix per state folder, and nothing left running after close. Each gateway serves
 * a few fixtures only; their deploy checks leave a container of each idle, as at any start.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { INSTANCE_LABEL, instanceOf } from '../../runtime/container/launcher.ts';
import { fixtures, startTestGateway, type TestGateway } from '../helpers/gateway.ts';

let gateway: TestGateway | undefined;
afterEach(async () => {
  await gateway?.close();
  gateway = undefined;
});

async function containersOf(stateDir: string): Promise<string[]> {
  const { stdout } = await execa('podman', ['ps', '--all', '--filter', `label=${INSTANCE_LABEL}=${instanceOf(stateDir)}`, '--format', '{{.Names}}']);
  return stdout.split('\n').filter(Boolean);
}

function coldFlags(logs: string[], fn: string): boolean[] {
  return logs.filter((l) => l.includes(' invocation ') && l.includes(`function=${fn} `)).map((l) => l.includes('cold=true'));
}

describe('the container pool', () => {
  it('starts a container for a request when none is warm, then reuses it', async () => {
    gateway = await startTestGateway({ functionsDir: await fixtures('exit-3'), poolSize: 0, idleTtlMs: 2000 });
    // The deploy check's container expires, idle: then there is none at all.
    await expect.poll(() => gateway!.runtime.pool.stats(), { timeout: 10_000 }).toMatchObject({ warm: 0, total: 0 });
    for (let i = 0; i < 3; i++) {
      const response = await fetch(`${gateway.url}/fn/exit-3`);
      expect(response.status).toBe(502);
    }
    await expect.poll(() => coldFlags(gateway!.logs, 'exit-3')).toEqual([true, false, false]);
    // The container goes back to the pool once the agent has cleaned up, just after the response.
    await expect.poll(() => gateway!.runtime.pool.stats()).toMatchObject({ warm: 0, idle: 1, busy: 0, total: 1 });
  });

  it('keeps poolSize generic containers warm, and refills after taking one', async () => {
    gateway = await startTestGateway({ functionsDir: await fixtures('env-dump'), poolSize: 2, idleTtlMs: 2000 });
    // The deploy check's container expires, idle; the warm ones stay.
    await expect.poll(() => gateway!.runtime.pool.stats(), { timeout: 10_000 }).toMatchObject({ warm: 2, idle: 0 });
    expect(await (await fetch(`${gateway.url}/fn/env-dump`)).text()).toContain('FNIX_FUNCTION=env-dump');
    await expect.poll(() => gateway!.runtime.pool.stats().warm, { timeout: 10_000 }).toBe(2);
    expect(coldFlags(gateway.logs, 'env-dump')).toEqual([false]);
  });

  it('queues requests beyond maxContainers, and answers 503 NO_CAPACITY when the wait is too long', async () => {
    gateway = await startTestGateway({ functionsDir: await fixtures('slow-lines', 'env-dump', 'exit-3'), poolSize: 0, maxContainers: 2, queueTimeoutMs: 1500 });
    const begin = performance.now();
    const slow = [1, 2].map(() => fetch(`${gateway!.url}/fn/slow-lines`).then((r) => r.text()));
    await expect.poll(() => gateway!.runtime.pool.stats().busy).toBe(2);
    const queued = await fetch(`${gateway.url}/fn/env-dump`);
    expect(queued.status).toBe(503);
    expect(queued.headers.get('retry-after')).toBe('1');
    expect(((await queued.json()) as { error: { code: string } }).error.code).toBe('NO_CAPACITY');
    expect(performance.now() - begin).toBeLessThan(3000);
    expect(await Promise.all(slow)).toEqual(['line 1\nline 2\nline 3\n', 'line 1\nline 2\nline 3\n']);
    // A container is free again: the next request evicts an idle one and runs.
    expect((await fetch(`${gateway.url}/fn/exit-3`)).status).toBe(502);
    expect(gateway.runtime.pool.stats().total).toBeLessThanOrEqual(2);
  });

  it('removes the containers of an earlier run at start, and all of its own at close', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'fnix-leftovers-'));
    const rootfs = await mkdtemp(join(tmpdir(), 'fnix-rootfs-'));
    try {
      await execa('podman', [
        'create',
        '--name',
        `fnix-${instanceOf(stateDir)}-leftover`,
        '--label',
        `${INSTANCE_LABEL}=${instanceOf(stateDir)}`,
        '--rootfs',
        rootfs,
        '/none',
      ]);
      expect(await containersOf(stateDir)).toEqual([`fnix-${instanceOf(stateDir)}-leftover`]);
      gateway = await startTestGateway({ stateDir, functionsDir: await fixtures('exit-3'), poolSize: 2 });
      await expect.poll(() => gateway!.runtime.pool.stats(), { timeout: 10_000 }).toMatchObject({ warm: 2, starting: 0 });
      const names = await containersOf(stateDir);
      expect(names).toHaveLength(gateway.runtime.pool.stats().total); // 2 warm, and exit-3's deploy check's
      expect(names).not.toContain(`fnix-${instanceOf(stateDir)}-leftover`);
      expect(gateway.logs.some((l) => l.includes('removed containers left by an earlier run count=1'))).toBe(true);
      await gateway.close();
      gateway = undefined;
      expect(await containersOf(stateDir)).toEqual([]);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
      await rm(rootfs, { recursive: true, force: true });
    }
  });

  it('stops invocations still running after the shutdown grace with 503 SHUTTING_DOWN', async () => {
    gateway = await startTestGateway({ functionsDir: await fixtures('forever'), poolSize: 1 });
    const pending = fetch(`${gateway.url}/fn/forever`);
    await expect.poll(() => gateway!.runtime.pool.stats().busy).toBe(1);
    const begin = performance.now();
    await gateway.runtime.close(300);
    expect(performance.now() - begin).toBeLessThan(2000);
    const response = await pending;
    expect(response.status).toBe(503);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('SHUTTING_DOWN');
    expect(await containersOf(gateway.stateDir)).toEqual([]);
  });

  it('refuses a second fnix on the same state folder', async () => {
    gateway = await startTestGateway({ functionsDir: await fixtures('exit-3'), poolSize: 1 });
    await expect.poll(() => gateway!.runtime.pool.stats().warm, { timeout: 10_000 }).toBe(1);
    const before = gateway.runtime.pool.stats();
    await expect(startTestGateway({ stateDir: gateway.stateDir, poolSize: 1 })).rejects.toThrow(/in use by fnix process \d+/);
    expect(gateway.runtime.pool.stats()).toMatchObject({ warm: before.warm, idle: before.idle }); // the first one's containers are untouched
    expect((await fetch(`${gateway.url}/fn/exit-3`)).status).toBe(502);
  });
});
