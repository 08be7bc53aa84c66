/**
 * @module
 * What a push or a build that died (fnix killed, the disk full) leaves under the state folder, removed
 * at start before anything else needs the space: git's quarantine folders and half-written packs, the
 * staging folder, half-copied builds, temporary record files. Nothing else runs then (the state folder
 * is locked), so none of it can belong to a push still under way.
 */
import { chmod, lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TEMPORARY_SUFFIX } from '../functions/build.ts';
import { REPOSITORY_NAME } from './git.ts';

/** What {@link removeDeployLeftovers} removed. */
export interface Leftovers {
  paths: string[];
  bytes: number;
}

/** Removes, under `stateDir`, everything a dead push or build left behind. */
export async function removeDeployLeftovers(stateDir: string): Promise<Leftovers> {
  const objects = join(stateDir, 'git', REPOSITORY_NAME, 'objects');
  const candidates = [
    // git's quarantine of a push in progress (tmp_objdir-incoming-XXXXXX), and packs index-pack was writing.
    ...(await matching(objects, (name) => name.startsWith('tmp_objdir-'))),
    ...(await matching(join(objects, 'pack'), (name) => name.startsWith('tmp_'))),
    ...(await matching(join(stateDir, 'staging'), () => true)),
    ...(await matching(join(stateDir, 'deployments'), (name) => name.endsWith('.tmp'))),
    ...(await nested(join(stateDir, 'builds'), (name) => name.endsWith(TEMPORARY_SUFFIX))),
  ];
  let bytes = 0;
  for (const path of candidates) {
    bytes += await sizeOf(path);
    // Builds are read-only trees: made writable first, so that they can go.
    await makeWritable(path);
    await rm(path, { recursive: true, force: true });
  }
  return { paths: candidates, bytes };
}

/** The entries of `dir` whose names `accept` takes (none when `dir` is missing). */
async function matching(dir: string, accept: (name: string) => boolean): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names.filter(accept).map((name) => join(dir, name));
}

/** The same, one level further down: `<dir>/<any>/<name>`. */
async function nested(dir: string, accept: (name: string) => boolean): Promise<string[]> {
  const found: string[] = [];
  for (const child of await matching(dir, () => true)) found.push(...(await matching(child, accept)));
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

async function makeWritable(path: string): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (!info?.isDirectory()) return;
  await chmod(path, 0o700).catch(() => {});
  for (const child of await matching(path, () => true)) await makeWritable(child);
}
