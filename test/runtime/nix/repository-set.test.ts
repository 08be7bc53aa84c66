/**
 * @module
 * A repository's package set (runtime/nix/repository-set.ts) through PackageResolver, against real Nix: a package
 * built on top of `<fnix>`, the offline set's own store paths through it, the set named by its content, restricted
 * evaluation's refusals as PACKAGES_NIX_INVALID and PACKAGE_BUILD_FAILED, recorded store paths served again
 * without evaluating, and the dry run's plan as sandbox.ts reads it.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { checkPackageSet, RESTRICTED_HINT, offlinePackageSet, type PackageSet } from '../../../runtime/nix/package-set.ts';
import { REPOSITORY_SET_FILE } from '../../../runtime/nix/repository-set.ts';
import { PackageResolver } from '../../../runtime/nix/resolve.ts';
import { parseRealisePlan } from '../../../runtime/nix/sandbox.ts';
import { rejectionOf } from '../../helpers/errors.ts';

let tmp: string;
let resolver: PackageResolver;
/** In the name of every derivation the tests make, so that they are deleted after (nix-store --delete spares what is in use). */
const MARK = `fnix-test-repository-set-${randomBytes(6).toString('hex')}`;

/** A derivation on top of `<fnix>` whose program prints `text`. */
const printing = (name: string, text: string) => `derivation {
    name = "${name}"; system = builtins.currentSystem;
    builder = "\${fnix.busybox}/bin/sh";
    args = [ "-c" "\${fnix.busybox}/bin/mkdir -p $out/bin && printf '#!\${fnix.busybox}/bin/sh\\\\necho ${text}\\\\n' > $out/bin/${name} && \${fnix.busybox}/bin/chmod +x $out/bin/${name}" ];
  }`;

/** The package set of a packages.nix holding `text`, written alone into a folder of its own as a build does. */
async function repositorySet(text: string, id = randomBytes(20).toString('hex')): Promise<PackageSet> {
  const dir = await mkdtemp(path.join(tmp, 'set-'));
  await writeFile(path.join(dir, REPOSITORY_SET_FILE), text);
  return resolver.repositorySet(dir, id);
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fnix-repository-set-'));
  resolver = new PackageResolver({ packageSet: offlinePackageSet(), gcRootsDir: path.join(tmp, 'roots') });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
  const made = (await readdir('/nix/store')).filter((name) => name.includes(MARK)).map((name) => path.join('/nix/store', name));
  if (made.length > 0) await execa('nix-store', ['--delete', ...made], { reject: false });
});

describe('a repository package set', () => {
  it('builds a package on top of <fnix> in the sandbox, and gives <fnix> packages their own store paths', async () => {
    const set = await repositorySet(`let fnix = import <fnix> { }; in fnix // { greet = ${printing(MARK, 'hello from the set')}; }`);
    const resolution = await resolver.resolve(['greet', 'bash'], { packageSet: set });
    expect(resolution.builtNewPaths).toBe(true);
    const [greet, bash] = resolution.packages.map((p) => p.storePath);
    expect((await execa(`${greet}/bin/${MARK}`)).stdout).toBe('hello from the set');
    // The very store path the offline set has for bash: <fnix> is the offline set, not a copy of it.
    const offline = await resolver.resolve(['bash']);
    expect(bash).toBe(offline.packages[0]!.storePath);
    expect(resolution.closure).toContain(offline.packages[0]!.storePath);
  }, 120_000);

  it('is named by its content, not by the folder it is written to', async () => {
    const text = 'import <fnix> { }';
    const [a, b, c] = [await repositorySet(text, 'a'.repeat(40)), await repositorySet(text, 'a'.repeat(40)), await repositorySet(text, 'b'.repeat(40))];
    expect(a.expression).not.toBe(b.expression);
    expect(resolver.keyOf(['bash'], a)).toBe(resolver.keyOf(['bash'], b));
    expect(resolver.keyOf(['bash'], a)).not.toBe(resolver.keyOf(['bash'], c));
    expect(resolver.keyOf(['bash'], a)).not.toBe(resolver.keyOf(['bash']));
  });

  it('refuses a set that reads a host file as PACKAGES_NIX_INVALID, naming the file, the path and why', async () => {
    const set = await repositorySet('let secret = builtins.readFile /etc/shadow; in builtins.seq secret (import <fnix> { })');
    const error = await rejectionOf(checkPackageSet(set), FnixError);
    expect(error.code).toBe('PACKAGES_NIX_INVALID');
    expect(error.message).toMatch(/^packages\.nix: does not evaluate: access to absolute path '\/etc\/shadow' is forbidden in restricted mode/);
    expect(error.message).toContain(RESTRICTED_HINT);
    expect(error.message).not.toContain(tmp);
  });

  it.each([
    ['a search path entry of the host', 'import <nixpkgs> { }', /file 'nixpkgs' was not found in the Nix search path/],
    ['a syntax error, at its line', '{ busybox = ; }', /^packages\.nix: does not evaluate: syntax error/],
    ['a value that is no set', '42', /^packages\.nix: evaluates to a int, not an attribute set/],
  ])('refuses %s as PACKAGES_NIX_INVALID', async (_what, text, message) => {
    const error = await rejectionOf(checkPackageSet(await repositorySet(text)), FnixError);
    expect(error.code).toBe('PACKAGES_NIX_INVALID');
    expect(error.message).toMatch(message);
  });

  it('refuses a package that reads a host file when it is evaluated, as PACKAGE_BUILD_FAILED with the reason', async () => {
    const set = await repositorySet(
      'let fnix = import <fnix> { }; in fnix // { sneaky = fnix.busybox // { drvPath = builtins.readFile /root/.ssh/id_rsa; }; }',
    );
    const error = await rejectionOf(resolver.resolve(['sneaky'], { packageSet: set }), FnixError);
    expect(error.code).toBe('PACKAGE_BUILD_FAILED');
    expect(error.message).toContain("access to absolute path '/root/.ssh/id_rsa' is forbidden in restricted mode");
    expect(error.message).toContain(RESTRICTED_HINT);
  });

  it('fetches at evaluation from a URL FNIX_ALLOWED_URIS allows (a pinned set, here from a local server), and from no other', async () => {
    const src = path.join(tmp, 'tarball', 'pinned');
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, 'default.nix'), `{ ... }: let fnix = import <fnix> { }; in fnix // { pinned = ${printing(`${MARK}-pinned`, 'pinned')}; }`);
    const tarball = path.join(tmp, 'pinned.tar.gz');
    await execa('tar', ['-czf', tarball, '-C', path.dirname(src), 'pinned']);
    const requests: string[] = [];
    const server = createServer(async (request, response) => {
      requests.push(request.url ?? '');
      response.end(await readFile(tarball));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const { stdout: sha256 } = await execa('nix-prefetch-url', ['--unpack', '--name', `${MARK}-source`, `${base}pinned.tar.gz`]);
      const text = `import (builtins.fetchTarball { name = "${MARK}-source"; url = "${base}pinned.tar.gz"; sha256 = "${sha256.trim()}"; }) { }`;
      const allowed = new PackageResolver({ packageSet: offlinePackageSet(), gcRootsDir: path.join(tmp, 'roots'), allowedUris: [base] });
      const dir = await mkdtemp(path.join(tmp, 'set-'));
      await writeFile(path.join(dir, REPOSITORY_SET_FILE), text);
      const resolution = await allowed.resolve(['pinned'], { packageSet: await allowed.repositorySet(dir, 'c'.repeat(40)) });
      expect((await execa(`${resolution.packages[0]!.storePath}/bin/${MARK}-pinned`)).stdout).toBe('pinned');
      const refused = await rejectionOf(checkPackageSet(await repositorySet(text.replace(`sha256 = "${sha256.trim()}"; `, ''))), FnixError);
      expect(refused.message).toContain(`access to URI '${base}pinned.tar.gz' is forbidden in restricted mode`);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  }, 120_000);

  it('serves recorded store paths again without evaluating, and resolves again when they are gone', async () => {
    const set = await repositorySet('import <fnix> { }');
    const first = await resolver.resolve(['bash', 'busybox'], { packageSet: set });
    const recorded = { packages: ['bash', 'busybox'], storePaths: first.packages.map((p) => p.storePath), rootKey: first.rootKey };
    const before = resolver.stats;
    const again = await resolver.resolve(['bash', 'busybox'], { packageSet: set, recorded });
    expect(again).toMatchObject({ reused: true, builtNewPaths: false, rootKey: first.rootKey, packages: first.packages, closure: first.closure });
    expect(resolver.stats).toEqual({ ...before, reused: before.reused + 1, nixProcesses: before.nixProcesses + 1 }); // nix-store -qR only
    const gone = { ...recorded, storePaths: [`/nix/store/${'0'.repeat(32)}-bash-static`, recorded.storePaths[1]!] };
    const resolved = await resolver.resolve(['bash', 'busybox'], { packageSet: set, recorded: gone });
    expect(resolved.reused).toBeUndefined();
    expect(resolved.packages).toEqual(first.packages);
  }, 120_000);
});

describe('parseRealisePlan', () => {
  it("reads what a dry run would build, fetch, and cannot make, from Nix 2.8's output", () => {
    const output = [
      'these 2 derivations will be built:',
      '  /nix/store/aaaa-one.drv',
      '  /nix/store/bbbb-two.drv',
      'these 3 paths will be fetched (0.10 MiB download, 0.52 MiB unpacked):',
      '  /nix/store/cccc-lib',
      "warning: don't know how to build these paths:",
      '  /nix/store/dddd-src',
      'warning: something else',
      '  /nix/store/eeee-ignored',
    ].join('\n');
    expect(parseRealisePlan(output)).toEqual({
      build: ['/nix/store/aaaa-one.drv', '/nix/store/bbbb-two.drv'],
      fetch: ['/nix/store/cccc-lib'],
      unknown: ['/nix/store/dddd-src'],
    });
    expect(parseRealisePlan('')).toEqual({ build: [], fetch: [], unknown: [] });
  });
});
