/**
 * @module
 * Start-up as a user meets it: the real entry point (gateway/main.ts) serving the example functions and
 * stopping cleanly on SIGTERM; broken functions reported without stopping the others; GC roots that
 * keep served closures through nix-collect-garbage.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, describe, expect, it } from 'vitest';
import { INSTANCE_LABEL, instanceOf } from '../../runtime/container/launcher.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { scrape } from '../helpers/metrics.ts';
import { startMain, type MainProcess } from '../helpers/main-process.ts';
import { openSession } from '../helpers/session-client.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MIXED_DIR = fileURLToPath(new URL('../fixtures/mixed', import.meta.url));

describe('gateway/main.ts', () => {
  it('serves the example functions, ends open sessions, and removes every container on SIGTERM', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'fnix-main-'));
    let child: MainProcess['child'] | undefined;
    try {
      const main = await startMain({ FNIX_STATE_DIR: stateDir, FNIX_POOL_SIZE: '2' });
      child = main.child;
      const { url, output } = main;
      expect(await (await fetch(`${url}/fn/hello`)).text()).toBe('Hello, world! This is fnix.\n');
      expect(output()).toMatch(/package set kind=offline/);
      const session = await openSession(url, '/sessions/shell?tty=1');
      await session.waitFor('$ ');

      main.child.kill('SIGTERM');
      const closed = await session.closed;
      expect(closed.code).toBe(1001);
      expect(closed.status?.error?.code).toBe('SHUTTING_DOWN');
      const result = await main.child;
      expect({ exitCode: result.exitCode, signal: result.signal }).toEqual({ exitCode: 0, signal: undefined });
      expect(output()).toContain('stopped');
      const { stdout } = await execa('podman', ['ps', '--all', '--filter', `label=${INSTANCE_LABEL}=${instanceOf(stateDir)}`, '--format', '{{.Names}}']);
      expect(stdout).toBe('');
    } finally {
      child?.kill('SIGKILL');
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('exits with a clear message when the configuration is wrong', async () => {
    const result = await execa('node', ['--import', 'tsx', 'gateway/main.ts'], {
      cwd: ROOT,
      env: { FNIX_POOL_SIZE: 'lots' },
      reject: false,
    });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('FNIX_POOL_SIZE="lots": expected an integer');
  });
});

describe('a functions folder with broken functions', () => {
  let gateway: TestGateway;
  afterAll(async () => {
    await gateway?.close();
  });

  it('serves the good ones and reports each broken one with its cause', async () => {
    // Through deployments, as npm start serves: the folder is imported as the first deployment.
    gateway = await startTestGateway({ functionsDir: MIXED_DIR, poolSize: 1 });
    expect(await (await fetch(`${gateway.url}/fn/good`)).text()).toBe('good\n');

    const causes: Record<string, { code: string; message: string }> = {};
    for (const name of ['unknown-field', 'no-such-package', 'command-missing']) {
      const response = await fetch(`${gateway.url}/fn/${name}`);
      expect(response.status, name).toBe(503);
      const { error } = (await response.json()) as { error: { code: string; cause: { code: string; message: string } } };
      expect(error.code, name).toBe('FUNCTION_UNAVAILABLE');
      causes[name] = error.cause;
    }
    expect(causes['unknown-field']!.code).toBe('MANIFEST_INVALID');
    expect(causes['unknown-field']!.message).toMatch(/unknown-field\/function\.json: field 'timeout' \(value 5\): unknown field/);
    expect(causes['no-such-package']!.code).toBe('PACKAGE_NOT_FOUND');
    expect(causes['no-such-package']!.message).toContain("'no-such-package' is not in offline set");
    expect(causes['command-missing']!.code).toBe('COMMAND_NOT_FOUND');
    expect(causes['command-missing']!.message).toContain("'gojq' is not in the bin/ folder of any declared package");

    const health = (await (await fetch(`${gateway.url}/healthz`)).json()) as { functions: Array<Record<string, any>> };
    expect(health.functions.find((f) => f['name'] === 'Bad_Name')).toMatchObject({ status: 'broken', error: { code: 'FUNCTION_NAME_INVALID' } });
    expect(health.functions.find((f) => f['name'] === 'good')).toMatchObject({ status: 'ready' });
    for (const name of ['unknown-field', 'no-such-package', 'command-missing', 'Bad_Name']) {
      expect(gateway.logs.some((l) => l.includes('function not served') && l.includes(`function=${name} `))).toBe(true);
    }
    const metrics = await scrape(gateway.url);
    expect(metrics.value('fnix_deployments_total', { outcome: 'partial' })).toBe(1);
    // The import is the active deployment, and its record names what it holds broken.
    const history = await fetch(`${gateway.url}/api/deployments`, { headers: { authorization: `Bearer ${gateway.token}` } });
    const [imported] = ((await history.json()) as { deployments: Array<Record<string, any>> }).deployments;
    expect(imported).toMatchObject({ source: 'import', status: 'active', functions: [{ name: 'good' }] });
    expect(imported!['broken'].map((b: { name: string }) => b.name).sort()).toEqual(['Bad_Name', 'command-missing', 'no-such-package', 'unknown-field']);
  });

  it('keeps served closures through nix-collect-garbage', async () => {
    const fn = gateway.runtime.registry.get('good');
    await execa('nix-collect-garbage');
    for (const path of fn.resolution.closure) expect((await stat(path)).isDirectory(), path).toBe(true);
    // Idle containers and fresh ones both still run it.
    expect(await (await fetch(`${gateway.url}/fn/good`)).text()).toBe('good\n');
  });
});
