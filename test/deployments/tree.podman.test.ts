/**
 * @module
 * Reading a commit's functions/ from git's objects and writing it out (deployments/tree.ts), against
 * real git: odd file names, large and empty files, shared blobs, links that stay and links that leave
 * (chains of them included), submodules, names that are not UTF-8.
 */
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Repository } from '../../deployments/repository.ts';
import { readFunctionsTree, writeFunctionsTree } from '../../deployments/tree.ts';
import { GIT_ENV } from '../helpers/git.ts';

let root: string;
let repository: Repository;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'fnix-tree-'));
  const hook = '#!/bin/sh\nexit 0\n';
  repository = await Repository.open({ root: join(root, 'git'), maxPushBytes: 64 * 1024 * 1024, hooks: { preReceive: hook, postReceive: hook } });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Commits what `make` writes into a fresh work tree, pushes it to the repository, returns the commit. */
async function commit(make: (dir: string) => Promise<void>): Promise<string> {
  const dir = await mkdtemp(join(root, 'work-'));
  await execa('git', ['init', '--quiet', '-b', 'main', dir], { env: GIT_ENV });
  await make(dir);
  await execa('git', ['add', '--all'], { cwd: dir, env: GIT_ENV });
  await execa('git', ['commit', '--quiet', '--allow-empty', '-m', 'x'], { cwd: dir, env: GIT_ENV });
  await execa('git', ['push', '--quiet', '--force', repository.gitDir, 'main'], { cwd: dir, env: GIT_ENV });
  return (await execa('git', ['rev-parse', 'HEAD'], { cwd: dir })).stdout.trim();
}

async function writeOut(oid: string) {
  const tree = await readFunctionsTree(repository, oid);
  const target = await mkdtemp(join(root, 'out-'));
  const linkProblems = await writeFunctionsTree(repository, tree, target);
  return { tree, target, linkProblems };
}

describe('readFunctionsTree and writeFunctionsTree', () => {
  it('writes every file byte-exact with its mode: odd names, a large file, an empty one, a shared blob', async () => {
    const big = randomBytes(3 * 1024 * 1024 + 17);
    const oid = await commit(async (dir) => {
      const fn = join(dir, 'functions', 'odd');
      await mkdir(join(fn, 'sub dir'), { recursive: true });
      await writeFile(join(fn, 'with space\tand tab\nand newline'), 'odd name');
      await writeFile(join(fn, 'big.bin'), big);
      await writeFile(join(fn, 'empty'), '');
      await writeFile(join(fn, 'sub dir', 'same.sh'), 'echo same\n');
      await writeFile(join(fn, 'same-but-executable.sh'), 'echo same\n');
      await chmod(join(fn, 'same-but-executable.sh'), 0o755);
      await writeFile(join(dir, 'functions', 'README.md'), 'not a function');
    });
    const { tree, target, linkProblems } = await writeOut(oid);
    expect(tree.problems.size + linkProblems.size).toBe(0);
    expect(tree.names).toEqual(['odd']);
    expect(tree.ignored).toEqual(['functions/README.md']);
    expect(await readFile(join(target, 'odd', 'with space\tand tab\nand newline'), 'utf8')).toBe('odd name');
    expect((await readFile(join(target, 'odd', 'big.bin'))).equals(big)).toBe(true);
    expect((await readFile(join(target, 'odd', 'empty'))).length).toBe(0);
    expect((await lstat(join(target, 'odd', 'sub dir', 'same.sh'))).mode & 0o777).toBe(0o644);
    expect((await lstat(join(target, 'odd', 'same-but-executable.sh'))).mode & 0o777).toBe(0o755);
  });

  it('keeps links that stay inside their function, chains included', async () => {
    const oid = await commit(async (dir) => {
      const fn = join(dir, 'functions', 'linked');
      await mkdir(join(fn, 'lib'), { recursive: true });
      await writeFile(join(fn, 'lib', 'real.sh'), 'echo real\n');
      await symlink('lib/real.sh', join(fn, 'main.sh'));
      await symlink('main.sh', join(fn, 'alias.sh'));
      await symlink('missing', join(fn, 'dangling'));
    });
    const { tree, target, linkProblems } = await writeOut(oid);
    expect(tree.problems.size + linkProblems.size).toBe(0);
    expect(await readlink(join(target, 'linked', 'alias.sh'))).toBe('main.sh');
    expect(await readFile(join(target, 'linked', 'alias.sh'), 'utf8')).toBe('echo real\n');
  });

  it('refuses links that leave their function: as written, absolute, or through a chain of links', async () => {
    const oid = await commit(async (dir) => {
      const fn = join(dir, 'functions', 'escape');
      await mkdir(fn, { recursive: true });
      await symlink('../other/x', join(fn, 'sibling'));
      await symlink('/etc/passwd', join(fn, 'absolute'));
      const chain = join(dir, 'functions', 'chain');
      await mkdir(chain, { recursive: true });
      // Each link looks harmless as text; followed one after another they climb out.
      await symlink('.', join(chain, 'self'));
      let previous = 'self';
      for (let i = 1; i <= 6; i++) {
        await symlink(`${previous}/..`, join(chain, `e${i}`));
        previous = `e${i}`;
      }
      await symlink(`${previous}/etc/os-release`, join(chain, 'function.json'));
    });
    const { tree, linkProblems } = await writeOut(oid);
    expect(tree.problems.get('escape')!.join('\n')).toMatch(
      /functions\/escape\/sibling: is a symbolic link to "..\/other\/x", which leads outside functions\/escape\//,
    );
    expect(tree.problems.get('escape')!.join('\n')).toContain('functions/escape/absolute: is a symbolic link to "/etc/passwd"');
    expect(linkProblems.get('chain')!.join('\n')).toMatch(
      /functions\/chain\/(e\d|function\.json): is a symbolic link .* which leads outside functions\/chain\//,
    );
  });

  it('refuses a submodule', async () => {
    const oid = await commit(async (dir) => {
      const vendor = join(dir, 'functions', 'sub', 'vendor');
      await mkdir(vendor, { recursive: true });
      await execa('git', ['init', '--quiet', vendor], { env: GIT_ENV });
      await writeFile(join(vendor, 'x'), 'x');
      await execa('git', ['add', 'x'], { cwd: vendor, env: GIT_ENV });
      await execa('git', ['commit', '--quiet', '-m', 'x'], { cwd: vendor, env: GIT_ENV });
      await writeFile(join(dir, 'functions', 'sub', 'function.json'), '{}');
    });
    const { tree } = await writeOut(oid);
    expect(tree.problems.get('sub')).toEqual([expect.stringContaining('functions/sub/vendor: is a submodule')]);
  });

  it('refuses a file name that is not UTF-8', async () => {
    const oid = await commit(async (dir) => {
      await mkdir(join(dir, 'functions', 'latin'), { recursive: true });
      await writeFile(Buffer.from(join(dir, 'functions', 'latin', 'caf\xe9'), 'latin1'), 'x');
    });
    const { tree } = await writeOut(oid);
    expect([...tree.problems.values()].flat().join('\n')).toContain('not UTF-8');
  });
});
