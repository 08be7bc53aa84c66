/**
 * @module
 * `GET /api/functions` and `GET /api/functions/<name>` on a real gateway (real Nix, real Podman): each
 * package's store path, the function's closure with each path's size, functions whose closures overlap
 * listing the same store paths, the list's total counting a shared path once, a broken function, an
 * unknown one, and the token.
 */
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeClosure, HOST_STORE_SIZES } from '../../runtime/nix/closure.ts';
import { startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';

const EXTRA_SET = fileURLToPath(new URL('../runtime/nix/fixtures/extra-set', import.meta.url));
const STORE_PATH = /^\/nix\/store\/[0-9a-z]{32}-[^/]+$/;

/** The functions served: four that share store paths (directly, or through a dependency), and a broken one. */
const FUNCTIONS: Record<string, object> = {
  // The example packages of the offline set.
  tools: { packages: ['busybox', 'bash', 'gojq'], command: ['./main.sh'] },
  plain: { packages: ['busybox'], command: ['./main.sh'] },
  // multi's bin output runs a script whose interpreter is bash's store path: bash is in its closure.
  multi: { packages: ['multi'], command: ['multi'] },
  // No package: its command is a static busybox of its own, which runs as its `true` applet.
  nothing: { packages: [], command: ['./true'] },
  broken: { packages: ['no-such-package'], command: ['./main.sh'] },
};

let gateway: TestGateway;
let functionsDir: string;

const api = async (path: string, authorization = `Bearer ${TEST_TOKEN}`) => {
  const response = await fetch(`${gateway.url}/api${path}`, { headers: { authorization } });
  return { status: response.status, body: (await response.json()) as any };
};

/** The runtime closure of `storePaths`, as Nix lists it. */
const requisites = async (storePaths: string[]) => (await execa('nix-store', ['--query', '--requisites', ...storePaths])).stdout.split('\n').sort();

beforeAll(async () => {
  functionsDir = await mkdtemp(join(tmpdir(), 'fnix-api-functions-'));
  for (const [name, manifest] of Object.entries(FUNCTIONS)) {
    await mkdir(join(functionsDir, name));
    await writeFile(join(functionsDir, name, 'function.json'), JSON.stringify(manifest));
    if (name === 'nothing') await copyFile('/bin/busybox', join(functionsDir, name, 'true'));
    else await writeFile(join(functionsDir, name, 'main.sh'), '#!/usr/bin/env sh\necho hi\n');
    await chmod(join(functionsDir, name, name === 'nothing' ? 'true' : 'main.sh'), 0o755);
  }
  gateway = await startTestGateway({ functionsDir, packages: EXTRA_SET });
});
afterAll(async () => {
  await gateway?.close();
  await rm(functionsDir, { recursive: true, force: true });
});

describe('GET /api/functions/<name>', () => {
  it("lists each package's store path and the whole closure, each path with its size", async () => {
    const { status, body } = await api('/functions/tools');
    expect(status).toBe(200);
    expect(body).toMatchObject({ name: 'tools', status: 'ready', packages: ['busybox', 'bash', 'gojq'], command: ['./main.sh'] });
    expect(body.storePaths).toHaveLength(3);
    expect(body.storePaths[0]).toMatch(/-busybox-static$/);
    expect(body.storePaths[1]).toMatch(/-bash-static$/);
    expect(body.storePaths[2]).toMatch(/-gojq$/);
    const { closure } = body;
    expect(Object.keys(closure)).toEqual(['count', 'totalBytes', 'paths']);
    expect(closure.paths.map((p: any) => p.path)).toEqual(await requisites(body.storePaths));
    for (const p of closure.paths) {
      expect(p.path).toMatch(STORE_PATH);
      expect(Number.isInteger(p.bytes) && p.bytes > 0, p.path).toBe(true);
    }
    expect(closure.count).toBe(closure.paths.length);
    expect(closure.totalBytes).toBe(closure.paths.reduce((sum: number, p: any) => sum + p.bytes, 0));
    for (const storePath of body.storePaths) expect(closure.paths.map((p: any) => p.path)).toContain(storePath);
  });

  it('lists the same store path, of the same size, for functions that share a package or a dependency', async () => {
    const [tools, plain, multi] = await Promise.all(['tools', 'plain', 'multi'].map(async (name) => (await api(`/functions/${name}`)).body));
    const sizeOf = (fn: any, storePath: string) => fn.closure.paths.find((p: any) => p.path === storePath)?.bytes;
    // A package both declare.
    const busybox = tools.storePaths[0];
    expect(plain.storePaths).toEqual([busybox]);
    expect(plain.closure.paths).toEqual([{ path: busybox, bytes: sizeOf(tools, busybox) }]);
    // A dependency of multi's, which tools declares: one store path for both, which multi's container reads too.
    const bash = tools.storePaths[1];
    expect(multi.storePaths[0]).toMatch(/-fnix-test-multi-bin$/);
    expect(multi.closure.paths.map((p: any) => p.path)).toEqual([multi.storePaths[0], bash].sort());
    expect(sizeOf(multi, bash)).toBe(sizeOf(tools, bash));
    expect(await (await fetch(`${gateway.url}/fn/multi`)).text()).toBe('multi\n');
  });

  it('shows an empty closure for a function without packages, and none for a broken one', async () => {
    expect((await api('/functions/nothing')).body.closure).toEqual({ count: 0, totalBytes: 0, paths: [] });
    const broken = await api('/functions/broken');
    expect(broken.status).toBe(200);
    expect(broken.body).toMatchObject({ name: 'broken', status: 'broken', error: { code: 'PACKAGE_NOT_FOUND' } });
    expect(broken.body).not.toHaveProperty('closure');
  });

  it('answers 404 FUNCTION_NOT_FOUND for an unknown function, and 401 without the token', async () => {
    const unknown = await api('/functions/nope');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'FUNCTION_NOT_FOUND', function: 'nope' });
    for (const authorization of ['', 'Bearer wrong-token-0123456789']) {
      const refused = await api('/functions/tools', authorization);
      expect(refused.status).toBe(401);
      expect(refused.body.error.code).toBe('UNAUTHORIZED');
    }
  });
});

describe('GET /api/functions', () => {
  it("gives each function its closure's count and size, and a total that counts a shared path once", async () => {
    const { status, body } = await api('/functions');
    expect(status).toBe(200);
    const byName = new Map(body.functions.map((f: any) => [f.name, f]));
    expect([...byName.keys()]).toEqual(['broken', 'multi', 'nothing', 'plain', 'tools']);
    expect((byName.get('broken') as any).closure).toBeUndefined();
    const served = ['multi', 'nothing', 'plain', 'tools'];
    const details = await Promise.all(served.map(async (name) => (await api(`/functions/${name}`)).body));
    served.forEach((name, i) => {
      const { count, totalBytes } = details[i].closure;
      expect((byName.get(name) as any).closure, name).toEqual({ count, totalBytes });
    });
    const union = new Map(details.flatMap((d) => d.closure.paths.map((p: any) => [p.path, p.bytes])));
    expect(body.closure).toEqual({ count: union.size, totalBytes: [...union.values()].reduce((a: number, b: any) => a + b, 0) });
    // busybox and bash are each counted once, though two functions hold each.
    const sum = details.reduce((total, d) => total + d.closure.totalBytes, 0);
    expect(body.closure.totalBytes).toBeLessThan(sum);
    expect(body.closure.count).toBe(4); // busybox, bash, gojq, multi-bin
  });

  it('spawns no Nix process once the sizes are known: the deployment measured them, and the API reads them', async () => {
    const before = HOST_STORE_SIZES.stats.nixProcesses;
    await api('/functions');
    await api('/functions/tools');
    expect(HOST_STORE_SIZES.stats.nixProcesses).toBe(before);
  });

  it("logs each function's closure as its first deployment built it, with the size the API shows", async () => {
    for (const name of ['tools', 'plain', 'multi', 'nothing']) {
      const { closure } = (await api(`/functions/${name}`)).body;
      const line = gateway.logs.find((l) => l.includes(`deploy: functions/${name}: built in`));
      expect(line, name).toMatch(/built in [\d.]+ s, closure /);
      expect(line, name).toContain(`, closure ${describeClosure(closure)} (packages: `);
    }
  });
});
