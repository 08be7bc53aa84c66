/**
 * @module
 * What a function can and cannot do inside its container, checked from inside (the function reports)
 * and from outside (the host's store and process table).
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { pidsWithEnv } from '../helpers/processes.ts';

let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startTestGateway();
});
afterAll(async () => {
  await gateway?.close();
});

async function facts(name: string): Promise<Record<string, string>> {
  const response = await fetch(`${gateway.url}/fn/${name}`);
  expect(response.status).toBe(200);
  const text = await response.text();
  return Object.fromEntries(
    text
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

describe('the container a function runs in', () => {
  it('is locked down: non-root, no capabilities, no network, read-only but /tmp, limits applied', async () => {
    const seen = await facts('isolation');
    expect(Number(seen['uid'])).toBeGreaterThanOrEqual(200_000);
    expect(seen['cap_eff']).toBe('0000000000000000');
    expect(seen['cap_bnd']).toBe('0000000000000000');
    expect(seen['no_new_privs']).toBe('1');
    expect(seen['interfaces']?.trim()).toBe('lo');
    expect(seen['home']).toBe('/tmp');
    expect(seen['fn_writable']).toBe('no');
    expect(seen['root_writable']).toBe('no');
    expect(seen['tmp_writable']).toBe('yes');
    expect(Number(seen['tmp_kb'])).toBe(64 * 1024);
    expect(seen['nofile']).toBe('1024');
    expect(seen['pids_max']).toBe('256');
    expect(seen['memory_limit']).toBe(String(256 * 1024 * 1024));
    expect(seen['oom_score_adj']).toBe('1000'); // the OOM killer takes the function, not the agent
    expect(seen['path']).toMatch(/^\/nix\/store\/[a-z0-9]{32}-busybox-static\/bin$/);
  });

  it("keeps the agents' sockets private to root on the host", async () => {
    expect((await stat(gateway.stateDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(gateway.stateDir, 'run'))).mode & 0o777).toBe(0o700);
    for (const name of await readdir(join(gateway.stateDir, 'run'))) {
      const control = await stat(join(gateway.stateDir, 'run', name, 'ctl'));
      expect(control.mode & 0o777).toBe(0o700);
      expect(control.uid).toBeGreaterThanOrEqual(200_000); // the container's own uid, not another's
    }
  });

  it('cannot change the host store', async () => {
    const before = (await readdir('/nix/store')).sort();
    const busybox = (await facts('isolation'))['path']!.replace(/\/bin$/, '/bin/busybox');
    const busyboxHash = createHash('sha256')
      .update(await readFile(busybox))
      .digest('hex');

    const response = await fetch(`${gateway.url}/fn/write-store`);
    expect(response.status).toBe(200);
    const report = await response.text();
    expect(report).toContain('refused /nix/store/fnix-test-marker');
    expect(report).toContain('refused /nix/store/fnix-test-dir');
    expect(report).toMatch(/refused \/nix\/store\/.*busybox/);
    expect(report).not.toMatch(/^(created|modified)/m);

    expect((await readdir('/nix/store')).sort()).toEqual(before);
    await expect(stat('/nix/store/fnix-test-marker')).rejects.toThrow();
    expect(
      createHash('sha256')
        .update(await readFile(busybox))
        .digest('hex'),
    ).toBe(busyboxHash);
  });

  it('leaves nothing for the next invocation: no processes, an empty /tmp and /dev/shm', async () => {
    const first = await fetch(`${gateway.url}/fn/leftovers`);
    const firstId = first.headers.get('x-fnix-invocation-id')!;
    expect(await first.text()).toContain('tmp=');
    // The background `sleep 1000` was killed when the function's main process exited.
    expect(await pidsWithEnv('FNIX_INVOCATION_ID', firstId)).toEqual([]);

    const second = await facts('leftovers');
    expect(second['tmp']?.trim()).toBe('');
    expect(second['shm']?.trim()).toBe('');
    expect(second['mqueue']?.trim()).toBe('');
    expect(second['processes']).toBe('0');
  });
});
