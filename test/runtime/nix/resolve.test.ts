/**
 * @module
 * PackageResolver against real Nix: resolution, caching, errors, GC roots (with a real nix-collect-garbage).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FnixError, isFnixError } from '../../../runtime/errors.ts';
import { choosePackageSet, nixPathExpression, offlinePackageSet, type PackageSet } from '../../../runtime/nix/package-set.ts';
import { PackageResolver } from '../../../runtime/nix/resolve.ts';
import { rejectionOf } from '../../helpers/errors.ts';

const EXTRA_SET = fileURLToPath(new URL('./fixtures/extra-set', import.meta.url));
const STORE_PATH = /^\/nix\/store\/[0-9a-z]{32}-[^/]+$/;

/**
 * Writes a package set: the extra set plus `attr`, a derivation named `name` whose builder makes $out/bin and
 * then runs `script` (with busybox's applets by full path only: the builder's PATH is empty).
 */
async function writeSetWith(file: string, attr: string, name: string, script: string): Promise<void> {
  await writeFile(
    file,
    `let s = import ${nixPathExpression(EXTRA_SET)} {}; in s // {
    ${attr} = derivation {
      name = "${name}"; system = builtins.currentSystem; builder = "\${s.bash}/bin/bash";
      args = [ "-c" "\${s.busybox}/bin/mkdir -p $out/bin; ${script}" ];
    };
  }`,
  );
}

/** The FnixError a promise rejects with. */
function fnixErrorOf(promise: Promise<unknown>): Promise<FnixError> {
  return rejectionOf(promise, FnixError);
}

describe('PackageResolver', () => {
  let tmp: string;
  let extraSet: PackageSet;
  const resolverIn = (packageSet: PackageSet, name = 'roots') => new PackageResolver({ packageSet, gcRootsDir: path.join(tmp, name) });

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'fnix-resolve-'));
    extraSet = await choosePackageSet(EXTRA_SET);
  });
  afterAll(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('resolves starter packages to store paths, PATH and closure', async () => {
    const resolver = resolverIn(offlinePackageSet());
    const resolution = await resolver.resolve(['gojq', 'busybox', 'gojq']);
    expect(resolution.packages.map((p) => p.attr)).toEqual(['gojq', 'busybox']);
    for (const p of resolution.packages) expect(p.storePath).toMatch(STORE_PATH);
    const [gojq, busybox] = resolution.packages.map((p) => p.storePath);
    expect(resolution.binPath).toBe(`${gojq}/bin:${busybox}/bin`);
    expect(resolution.closure).toEqual([...resolution.closure].sort());
    expect(resolution.closure).toContain(gojq);
    expect(resolution.closure).toContain(busybox);
    const { stdout } = await execa('gojq', ['--version'], { env: { PATH: resolution.binPath }, extendEnv: false });
    expect(stdout).toMatch(/^gojq 0\./);
    const { stdout: listed } = await execa('ls', [`${busybox}/bin`], { env: { PATH: resolution.binPath }, extendEnv: false });
    expect(listed.split('\n')).toContain('busybox');
  }, 120_000);

  it('serves a repeated list from the cache without running Nix, in the new order', async () => {
    const resolver = resolverIn(offlinePackageSet());
    const first = await resolver.resolve(['bash', 'gojq']);
    const before = resolver.stats;
    const second = await resolver.resolve(['gojq', 'bash', 'bash']);
    expect(resolver.stats).toEqual(before);
    expect(second.packages).toEqual([...first.packages].reverse());
    expect(second.closure).toEqual(first.closure);
    expect(second.rootKey).toBe(first.rootKey);
    expect(second.builtNewPaths).toBe(false);
    expect(resolver.keyOf(['gojq', 'bash'])).toBe(resolver.keyOf(['bash', 'gojq', 'gojq']));
  }, 120_000);

  it('shares one Nix run between concurrent requests for the same list', async () => {
    const resolver = resolverIn(offlinePackageSet());
    const [a, b, c] = await Promise.all([resolver.resolve(['busybox', 'bash']), resolver.resolve(['bash', 'busybox']), resolver.resolve(['busybox', 'bash'])]);
    expect(resolver.stats.resolutions).toBe(1);
    expect(b.packages).toEqual([...a.packages].reverse());
    expect(c).toEqual(a);
  }, 120_000);

  it('puts the bin output of a multi-output package on PATH', async () => {
    const resolution = await resolverIn(extraSet).resolve(['multi']);
    expect(resolution.packages[0]?.storePath).toMatch(/-fnix-test-multi-bin$/);
    const { stdout } = await execa('multi', [], { env: { PATH: resolution.binPath }, extendEnv: false });
    expect(stdout).toBe('multi');
  }, 120_000);

  it('resolves nested attribute paths', async () => {
    const resolution = await resolverIn(extraSet).resolve(['tools.jq']);
    expect(resolution.packages[0]?.storePath).toMatch(/-gojq$/);
  }, 120_000);

  it('names every missing package, with the package set, as PACKAGE_NOT_FOUND (not cached)', async () => {
    const resolver = resolverIn(offlinePackageSet());
    const error = await fnixErrorOf(resolver.resolve(['gojq', 'nope', 'python3Packages.no-such-library']));
    expect(error.code).toBe('PACKAGE_NOT_FOUND');
    expect(error.message).toContain("'nope'");
    expect(error.message).toContain("'python3Packages.no-such-library'");
    expect(error.message).toContain('offline set');
    expect(error.details).toMatchObject({ packages: ['nope', 'python3Packages.no-such-library'], packageSet: offlinePackageSet().description });
    await fnixErrorOf(resolver.resolve(['gojq', 'nope', 'python3Packages.no-such-library']));
    expect(resolver.stats.resolutions).toBe(2);
  }, 120_000);

  it('reports attributes that are not derivations', async () => {
    const error = await fnixErrorOf(resolverIn(extraSet).resolve(['tools', 'number', 'missing']));
    expect(error.code).toBe('PACKAGE_NOT_FOUND');
    expect(error.message).toContain("'missing'");
    expect(error.message).toContain("'tools' in");
    expect(error.message).toContain('is a set, not a package');
    expect(error.message).toContain("'number' in");
    expect(error.details['packages']).toEqual(['missing', 'tools', 'number']);
  }, 120_000);

  it('rejects invalid attribute paths before running Nix', async () => {
    const resolver = resolverIn(offlinePackageSet());
    const error = await fnixErrorOf(resolver.resolve(['gojq', 'rm -rf /', '../etc', 'a..b', '"quoted"', '']));
    expect(error.code).toBe('PACKAGE_NOT_FOUND');
    expect(error.message).toContain('not valid Nix attribute paths');
    expect(error.details['packages']).toEqual(['rm -rf /', '../etc', 'a..b', '"quoted"', '']);
    expect(resolver.stats.nixProcesses).toBe(0);
  });

  it('reports a failing build as PACKAGE_BUILD_FAILED with the log tail', async () => {
    const error = await fnixErrorOf(resolverIn(extraSet).resolve(['gojq', 'broken']));
    expect(error.code).toBe('PACKAGE_BUILD_FAILED');
    expect(error.message).toContain("'broken'");
    expect(error.message).toContain('failed with exit code 3');
    expect(error.details['packages']).toEqual(['broken']);
    const log = String(error.details['log']);
    expect(log).toContain('broken-last-line');
    expect(log.split('\n').length).toBeLessThanOrEqual(40);
  }, 120_000);

  it('reports a package that throws during evaluation with the Nix message', async () => {
    const error = await fnixErrorOf(resolverIn(extraSet).resolve(['removed']));
    expect(error.code).toBe('PACKAGE_BUILD_FAILED');
    expect(error.message).toContain("'removed'");
    expect(error.message).toContain('removed: use gojq instead');
  }, 120_000);

  it('reports a package set that does not evaluate as PACKAGE_SET_INVALID', async () => {
    const broken = await choosePackageSet(fileURLToPath(new URL('./fixtures/syntax-error', import.meta.url)));
    const error = await fnixErrorOf(resolverIn(broken).resolve(['gojq']));
    expect(error.code).toBe('PACKAGE_SET_INVALID');
  }, 120_000);

  it('keeps rooted packages through nix-collect-garbage, and lets pruned ones go', async () => {
    // A package set with a derivation no other run has built, so building it is observable.
    const nonce = `${process.pid}-${Date.now()}`;
    const setFile = path.join(tmp, 'fresh-set.nix');
    await writeSetWith(setFile, 'fresh', `fnix-test-fresh-${nonce}`, `echo ${nonce} > $out/bin/nonce`);
    const freshSet = await choosePackageSet(setFile);
    const resolver = resolverIn(freshSet, 'gc-roots');

    const first = await resolver.resolve(['fresh', 'gojq']);
    expect(first.builtNewPaths).toBe(true);
    const fresh = first.packages[0]!.storePath;
    const rootDir = path.join(tmp, 'gc-roots', first.rootKey);
    const links = await readdir(rootDir);
    expect((await Promise.all(links.map((l) => readlink(path.join(rootDir, l))))).sort()).toEqual(first.packages.map((p) => p.storePath).sort());

    await execa('nix-collect-garbage', []);
    for (const p of first.closure) expect(existsSync(p)).toBe(true);

    const again = await resolverIn(freshSet, 'gc-roots').resolve(['gojq', 'fresh']);
    expect(again.builtNewPaths).toBe(false);
    expect(again.rootKey).toBe(first.rootKey);

    const busybox = await resolver.resolve(['busybox']);
    expect(await resolver.pruneRoots([busybox.rootKey])).toEqual([first.rootKey]);
    expect(existsSync(rootDir)).toBe(false);
    await execa('nix-collect-garbage', []);
    expect(existsSync(fresh)).toBe(false);

    // The pruned list is no longer cached: resolving it again rebuilds and re-roots it.
    const rebuilt = await resolver.resolve(['fresh', 'gojq']);
    expect(rebuilt.builtNewPaths).toBe(true);
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(rootDir)).toBe(true);
  }, 240_000);

  it('roots a list that resolves to new paths (the set changed) apart, keeping the roots of the old ones', async () => {
    const nonce = `${process.pid}-${Date.now()}`;
    const setFile = path.join(tmp, 'changing-set.nix');
    const write = (text: string) => writeSetWith(setFile, 'note', `fnix-test-note-${nonce}`, `echo ${text} > $out/bin/note`);
    await write('v1');
    const set = await choosePackageSet(setFile);
    const before = await resolverIn(set, 'changing').resolve(['note']);
    await write('v2'); // as an updated offline set or nixpkgs channel would: same expression, new paths
    const after = await resolverIn(set, 'changing').resolve(['note']);
    expect(after.packages[0]!.storePath).not.toBe(before.packages[0]!.storePath);
    expect(after.rootKey).not.toBe(before.rootKey);
    for (const resolution of [before, after]) {
      const { stdout } = await execa('nix-store', ['--query', '--roots', resolution.packages[0]!.storePath]);
      expect(stdout).toContain(path.join(tmp, 'changing', resolution.rootKey));
    }
    await rm(path.join(tmp, 'changing'), { recursive: true, force: true });
    await execa('nix-store', ['--delete', before.packages[0]!.storePath, after.packages[0]!.storePath], { reject: false });
  }, 120_000);

  it('resolves an empty list without Nix', async () => {
    const resolver = resolverIn(offlinePackageSet());
    expect(await resolver.resolve([])).toMatchObject({ packages: [], binPath: '', closure: [], builtNewPaths: false });
    expect(resolver.stats.nixProcesses).toBe(0);
  });
});

describe('isFnixError', () => {
  it('is what callers use to branch on resolver errors', () => {
    expect(isFnixError(new FnixError('PACKAGE_NOT_FOUND', 'x'), 'PACKAGE_NOT_FOUND')).toBe(true);
  });
});
