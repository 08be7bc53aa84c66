/**
 * @module
 * A repository that carries its package set (packages.nix at its root), through real git pushes to a running
 * gateway: without it FNIX_PACKAGES applies; with it a function is served from a package built on top of
 * `<fnix>`, a new version of it goes live, a rollback serves the old closure again, and a restart serves the
 * recorded store paths without evaluating anything (and resolves again, with a warning, when they are gone).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, TEST_TOKEN, type TestGateway } from '../helpers/gateway.ts';
import { git } from '../helpers/git.ts';

const EXTRA_SET = fileURLToPath(new URL('../runtime/nix/fixtures/extra-set', import.meta.url));
let gateway: TestGateway;
let stateDir: string;
let work: string;

const remote = () => `${gateway.url.replace('http://', `http://fnix:${TEST_TOKEN}@`)}/git/functions.git`;
const invoke = async (name: string) => (await fetch(`${gateway.url}/fn/${name}`)).text();
const api = async (path: string, init: RequestInit = {}) => {
  const response = await fetch(`${gateway.url}/api${path}`, { ...init, headers: { authorization: `Bearer ${TEST_TOKEN}`, ...init.headers } });
  return { status: response.status, body: (await response.json()) as any };
};
const restart = async () => {
  await gateway.close();
  gateway = await startTestGateway({ stateDir, functionsDir: join(work, 'initial', 'functions'), packages: EXTRA_SET });
};

/** A packages.nix whose `greeting` is a program, built with <fnix>'s busybox, that prints `text` with <fnix>'s bash. */
const packagesNix = (text: string) => `let fnix = import <fnix> { }; in fnix // {
  greeting = derivation {
    name = "fnix-test-greeting"; system = builtins.currentSystem;
    builder = "\${fnix.busybox}/bin/sh";
    args = [ "-c" ''
      \${fnix.busybox}/bin/mkdir -p $out/bin
      printf '#!\${fnix.bash}/bin/bash\\necho ${text}\\n' > $out/bin/greeting
      \${fnix.busybox}/bin/chmod 0555 $out/bin/greeting
    '' ];
  };
}
`;

/** Writes `functions/<name>/function.json` into `dir`. */
async function writeFunction(dir: string, name: string, manifest: object): Promise<void> {
  await mkdir(join(dir, 'functions', name), { recursive: true });
  await writeFile(join(dir, 'functions', name, 'function.json'), JSON.stringify(manifest));
}

async function clone(): Promise<string> {
  const dir = await mkdtemp(join(work, 'clone-'));
  const result = await git(work, 'clone', '--quiet', remote(), dir);
  expect(result.exitCode, result.all).toBe(0);
  return dir;
}

async function commitAndPush(dir: string, message: string) {
  await git(dir, 'add', '--all');
  await git(dir, 'commit', '--quiet', '-m', message);
  return git(dir, 'push', 'origin', 'main');
}

/** The active deployment's record, and the store paths of `name` in it. */
async function active(name: string): Promise<{ id: string; storePaths: string[] }> {
  const { body } = await api('/deployments');
  const record = body.deployments.find((d: any) => d.status === 'active');
  return { id: record.id, storePaths: record.functions.find((f: any) => f.name === name).storePaths };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-package-set-'));
  stateDir = await mkdtemp(join(tmpdir(), 'fnix-package-set-state-'));
  // `multi` is in FNIX_PACKAGES' set (the extra set) only.
  await writeFunction(join(work, 'initial'), 'multi', { packages: ['multi'], command: ['multi'] });
  gateway = await startTestGateway({ stateDir, functionsDir: join(work, 'initial', 'functions'), packages: EXTRA_SET });
});
afterAll(async () => {
  await gateway?.close();
  await rm(work, { recursive: true, force: true });
  await rm(stateDir, { recursive: true, force: true });
});

describe('a repository without packages.nix', () => {
  it('is served from FNIX_PACKAGES', async () => {
    expect(await invoke('multi')).toBe('multi\n');
  });
});

describe('a repository with packages.nix', () => {
  let first: { id: string; storePaths: string[] };

  it('looks every package up in it: one FNIX_PACKAGES has and it has not is refused', async () => {
    const dir = await clone();
    await writeFile(join(dir, 'packages.nix'), packagesNix('v1'));
    await writeFunction(dir, 'greet', { packages: ['greeting', 'bash'], command: ['greeting'] });
    const pushed = await commitAndPush(dir, 'packages.nix, multi kept');
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toContain("functions/multi: package 'multi' is not in packages.nix");
    expect(await invoke('multi')).toBe('multi\n');
  });

  it('serves a function from a package built on top of <fnix>', async () => {
    const dir = await clone();
    await writeFile(join(dir, 'packages.nix'), packagesNix('v1'));
    await writeFunction(dir, 'greet', { packages: ['greeting', 'bash'], command: ['greeting'] });
    await rm(join(dir, 'functions', 'multi'), { recursive: true });
    const pushed = await commitAndPush(dir, 'greeting v1');
    expect(pushed.exitCode, pushed.all).toBe(0);
    const blob = (await git(dir, 'rev-parse', 'HEAD:packages.nix')).stdout.trim();
    expect(pushed.all).toContain(`remote: packages.nix: the package set of this commit (blob ${blob.slice(0, 12)}), evaluated restricted`);
    expect(await invoke('greet')).toBe('v1\n');
    first = await active('greet');
    expect(first.storePaths[0]).toMatch(/^\/nix\/store\/\w{32}-fnix-test-greeting$/);
    const { body } = await api('/deployments');
    expect(body.deployments.find((d: any) => d.id === first.id).packageFile).toBe(blob);
    expect((await api('/functions/greet')).body.storePaths).toEqual(first.storePaths);
  });

  it('serves the new version of a package once it is pushed', async () => {
    const dir = await clone();
    await writeFile(join(dir, 'packages.nix'), packagesNix('v2'));
    const pushed = await commitAndPush(dir, 'greeting v2');
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(await invoke('greet')).toBe('v2\n');
    expect((await active('greet')).storePaths[0]).not.toBe(first.storePaths[0]);
  });

  it('refuses a packages.nix that does not evaluate, naming it and the line, and goes on serving', async () => {
    const dir = await clone();
    await writeFile(join(dir, 'packages.nix'), 'let fnix = import <fnix> { }; in fnix // {\n  greeting = ;\n}\n');
    const pushed = await commitAndPush(dir, 'a typo');
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.all).toMatch(/remote: +packages\.nix: does not evaluate: syntax error, unexpected ';' \(at packages\.nix:2:\d+\)/);
    expect(pushed.all).toContain('the functions being served are unchanged');
    expect(await invoke('greet')).toBe('v2\n');
  });

  it('rolls back to the first version: the old closure, at its old store paths', async () => {
    const back = await api(`/deployments/${first.id}/activate`, { method: 'POST' });
    expect(back.status, JSON.stringify(back.body)).toBe(200);
    expect(await invoke('greet')).toBe('v1\n');
    expect((await api('/functions/greet')).body.storePaths).toEqual(first.storePaths);
  });

  it('serves the recorded store paths after a restart, evaluating nothing', async () => {
    await restart();
    expect(await invoke('greet')).toBe('v1\n');
    expect((await api('/functions/greet')).body.storePaths).toEqual(first.storePaths);
    const { stats } = gateway.runtime.resolver;
    expect(stats.resolutions).toBe(0);
    expect(stats.reused).toBeGreaterThanOrEqual(1);
  });

  it('resolves again, with a warning, when the recorded store paths are gone', async () => {
    const file = join(stateDir, 'deployments', `${first.id}.json`);
    const record = JSON.parse(await readFile(file, 'utf8'));
    record.functions.find((f: any) => f.name === 'greet').storePaths[0] = `/nix/store/${'0'.repeat(32)}-fnix-test-greeting`;
    await gateway.close();
    await writeFile(file, JSON.stringify(record));
    gateway = await startTestGateway({ stateDir, functionsDir: join(work, 'initial', 'functions'), packages: EXTRA_SET });
    expect(await invoke('greet')).toBe('v1\n');
    // Served from what Nix resolved (the record still says what was recorded).
    const served = gateway.runtime.registry.versions().find((v) => v.name === 'greet')!;
    expect(served.resolution.packages.map((p) => p.storePath)).toEqual(first.storePaths);
    expect(gateway.runtime.resolver.stats.resolutions).toBe(1);
    const warning = gateway.logs.find((line) => line.includes("a function's recorded store paths are gone from the store"));
    expect(warning).toContain(first.storePaths[0]);
  });
});

describe('a push that removes packages.nix', () => {
  it('is served from FNIX_PACKAGES again', async () => {
    const dir = await clone();
    await rm(join(dir, 'packages.nix'));
    await rm(join(dir, 'functions', 'greet'), { recursive: true });
    await writeFunction(dir, 'multi', { packages: ['multi'], command: ['multi'] });
    const pushed = await commitAndPush(dir, 'no packages.nix');
    expect(pushed.exitCode, pushed.all).toBe(0);
    expect(pushed.all).not.toContain('remote: packages.nix');
    expect(await invoke('multi')).toBe('multi\n');
  });
});
