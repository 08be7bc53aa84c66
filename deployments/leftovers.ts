/**
 * @module
 * What a push or a build that died (fnix killed, the disk full) leaves under the state folder, removed
 * at start before anything else needs the space: git's quarantine folders, half-written packs and lock
 * files (a `refs/heads/main.lock` left by a push killed while git moved main would refuse every push
 * after it), the staging copies, half-copied builds, temporary record files. It runs once the state
 * folder is locked, so none of it can belong to a push still under way.
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { makeWritable, TEMPORARY_SUFFIX } from '../runtime/functions/build.ts';
import { REPOSITORY_NAME } from './repository.ts';
import { deployLayout } from './layout.ts';

/** What {@link removeDeployLeftovers} removed. */
export interface Leftovers {
  paths: string[];
  bytes: number;
}

/** Removes, under `stateDir`, everything a dead push or build left behind. */
export async function removeDeployLeftovers(stateDir: string): Promise<Leftovers> {
  const { gitRoot, recordsDir, stagingDir, buildsDir } = deployLayout(stateDir);
  const gitDir = join(gitRoot, REPOSITORY_NAME);
  const objects = join(gitDir, 'objects');
  const isLock = (name: string) => name.endsWith('.lock');
  const candidates = [
    // git's quarantine of a push in progress (tmp_objdir-incoming-XXXXXX), and packs index-pack was writing.
    ...(await matching(objects, (name) => name.startsWith('tmp_objdir-'))),
    ...(await matching(join(objects, 'pack'), (name) => name.startsWith('tmp_'))),
    // git's lock files: config.lock, packed-refs.lock, HEAD.lock, and refs/**/*.lock.
    ...(await matching(gitDir, isLock)),
    ...(await below(join(gitDir, 'refs'), isLock)),
    ...(await matching(stagingDir, () => true)),
    ...(await matching(recordsDir, (name) => name.endsWith('.tmp'))),
    ...(await below(buildsDir, (name) => name.endsWith(TEMPORARY_SUFFIX), 1)),
  ];
  let bytes = 0;
  for (const path of candidates) {
    bytes += await sizeOf(path);
    // Builds are read-only trees: made writable first, so that they can go.
    if ((await lstat(path).catch(() => undefined))?.isDirectory()) await makeWritable(path).catch(() => {});
    await rm(path, { recursive: true, force: true });
  }
  return { paths: candidates, bytes };
}

/** The entries of `dir` whose names `accept` takes (none when `dir` is missing). */
async function matching(dir: string, accept: (name: string) => boolean): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter(accept).map((name) => join(dir, name));
}

/** The same, in every folder below `dir`, at most `depth` folders down. */
async function below(dir: string, accept: (name: string) => boolean, depth = 16): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (accept(entry.name)) found.push(path);
      else if (depth > 0) found.push(...(await below(path, accept, depth - 1)));
    } else if (accept(entry.name)) found.push(path);
  }
  return found;
}

async function sizeOf(path: string): Promise<number> {
  const info = await lstat(path).catch(() => undefined);
  if (!info) return 0;
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const child of await matching(path, () => true)) total += await sizeOf(child);
  return total;
}
