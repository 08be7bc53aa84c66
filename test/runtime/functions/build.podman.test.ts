/**
 * @module
 * buildFunction's check of a command in the function's own folder (`./x`), against the real starter set.
 */
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { buildFunction } from '../../../runtime/functions/build.ts';
import { offlinePackageSet } from '../../../runtime/nix/package-set.ts';
import { PackageResolver } from '../../../runtime/nix/resolve.ts';
import { rejectionOf } from '../../helpers/errors.ts';

let work: string;
let resolver: PackageResolver;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fnix-build-'));
  resolver = new PackageResolver({ packageSet: offlinePackageSet(), gcRootsDir: join(work, 'gcroots') });
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A function folder whose command is `./main`, made by `make` in it. */
async function build(name: string, make: (dir: string) => Promise<void>) {
  const dir = join(work, 'src', name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'function.json'), JSON.stringify({ packages: ['busybox'], command: ['./main'] }));
  await make(dir);
  return buildFunction({ name, sourceDir: dir, buildsDir: join(work, 'builds'), resolver });
}

describe('a command in the function folder', () => {
  it('builds with an executable file, or a link to one in the folder', async () => {
    const script = async (dir: string) => {
      await writeFile(join(dir, 'run.sh'), '#!/usr/bin/env sh\necho hi\n');
      await chmod(join(dir, 'run.sh'), 0o755);
    };
    await expect(
      build('file', async (dir) => {
        await script(dir);
        await symlink('run.sh', join(dir, 'main'));
      }),
    ).resolves.toMatchObject({ name: 'file' });
  });

  it.each([
    ['missing', async () => {}, 'there is no ./main in the function folder'],
    ['not-executable', (dir: string) => writeFile(join(dir, 'main'), 'echo hi\n'), './main is not executable: run chmod +x ./main'],
    ['a-folder', (dir: string) => mkdir(join(dir, 'main')), './main is not a file'],
    ['dangling', (dir: string) => symlink('nowhere', join(dir, 'main')), './main is a symbolic link to nothing'],
  ])('refuses a command that is %s, with COMMAND_NOT_FOUND naming the file and the fix', async (name, make, reason) => {
    const error = await rejectionOf(build(name, make), FnixError);
    expect(error).toMatchObject({ code: 'COMMAND_NOT_FOUND' });
    expect((error as Error).message).toContain(`${name}/function.json: field 'command.0' (value "./main"): ${reason}`);
  });
});
