/**
 * @module
 * The deployment history kept, and what it needs on disk: the newest `historyLimit` records, the
 * active one and the one it replaced; the refs that keep their commits; and, for the ready ones, their
 * builds (`<state>/builds/<name>/<version>/`) and the GC roots of their packages. Everything else goes:
 * older records, and every build and root that nothing kept names (a refused push's, a dead process's),
 * so that `nix-collect-garbage` frees what no kept deployment needs, and never what one does.
 *
 * It sweeps what nothing needs rather than deleting what the dropped records named, so that a prune cut
 * short, or a push that died between its builds and its record, is tidied by the next one (at the next
 * activation, or at start). It runs holding the deploy lock: no check is under way, so none of its
 * builds or roots can be removed from under it.
 */
import { readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { makeWritable } from '../runtime/functions/build.ts';
import { isFunctionName } from '../runtime/functions/name.ts';
import type { FunctionVersion } from '../runtime/functions/version.ts';
import { DEPLOYMENT_REFS } from './activate.ts';
import type { DeployContext } from './context.ts';
import type { Held } from './lock.ts';
import type { DeploymentRecord } from './records.ts';

/** A build's folder name: the first 12 hex digits of its hash (runtime/functions/build.ts); nothing else is removed. */
const VERSION_PATTERN = /^[0-9a-f]{12}$/;

/**
 * Keeps the history {@link chooseKept} chooses, with its refs, builds and GC roots; removes the rest.
 * Besides the kept records' functions, the versions served now and those prepared for a kept deployment's
 * activation are kept: a rebuild after the package set changed can differ from what its record names.
 */
export async function pruneHistory(ctx: DeployContext, _held: Held, activeId: string): Promise<void> {
  const records = await ctx.store.list();
  const kept = chooseKept(records, { limit: ctx.historyLimit, activeId });
  const dropped = records.filter((record) => !kept.includes(record));
  for (const record of dropped) {
    await ctx.store.remove(record.id);
    await ctx.repository.git(['update-ref', '-d', `${DEPLOYMENT_REFS}${record.id}`], { reject: false });
    ctx.prepared.forget(record.id);
  }
  const ready = kept.filter((record) => record.result === 'ready');
  const live: FunctionVersion[] = [...ctx.registry.versions(), ...ready.flatMap((record) => ctx.prepared.get(record.id)?.versions ?? [])];
  const recorded = ready.flatMap((record) => record.functions);
  const roots = await ctx.resolver.pruneRoots([...recorded.map((f) => f.rootKey), ...live.map((v) => v.resolution.rootKey)]);
  const builds = await removeUnusedBuilds(ctx.buildsDir, [...recorded.map((f) => `${f.name}/${f.version}`), ...live.map((v) => `${v.name}/${v.version}`)]);
  if (dropped.length + roots.length + builds.length > 0) {
    ctx.log.info('deployment history pruned', { kept: kept.length, records: dropped.length, builds: builds.length, roots: roots.length });
  }
}

/** What {@link chooseKept} keeps. */
export interface KeptOptions {
  /** The newest records kept, whatever their result. */
  limit: number;
  /** The active deployment, kept whatever its age. */
  activeId: string;
}

/**
 * The records kept, newest first: the newest `limit`, the active one, and the one active before it (a
 * request that took its version just before the switch may still be setting up a container from its build).
 * @param records every record, newest first (as `DeploymentStore.list` gives them).
 */
export function chooseKept(records: readonly DeploymentRecord[], { limit, activeId }: KeptOptions): DeploymentRecord[] {
  let replaced: DeploymentRecord | undefined;
  for (const record of records) {
    const last = record.activations.at(-1);
    if (record.id !== activeId && last !== undefined && (replaced === undefined || last > replaced.activations.at(-1)!)) replaced = record;
  }
  return records.filter((record, index) => index < limit || record.id === activeId || record === replaced);
}

/**
 * Removes every build under `buildsDir` (`<name>/<version>/`, read-only trees) that `keep` does not name as
 * `name/version`, and function folders left empty. Anything not named like a build is left alone:
 * half-copied builds (`*.tmp`) are removed at start (leftovers.ts), and other files are not fnix's.
 * @returns the builds removed, as `name/version`.
 */
export async function removeUnusedBuilds(buildsDir: string, keep: Iterable<string>): Promise<string[]> {
  const kept = new Set(keep);
  const removed: string[] = [];
  for (const name of (await entries(buildsDir)).filter(isFunctionName)) {
    const functionDir = join(buildsDir, name);
    for (const version of await entries(functionDir)) {
      if (!VERSION_PATTERN.test(version) || kept.has(`${name}/${version}`)) continue;
      const dir = join(functionDir, version);
      await makeWritable(dir).catch(() => {}); // a file where a build should be: rm takes it as it is
      await rm(dir, { recursive: true, force: true });
      removed.push(`${name}/${version}`);
    }
    // Only when empty: the folder of a function no kept deployment has.
    await rmdir(functionDir).catch(() => {});
  }
  return removed;
}

/** The names in `dir`; none when it is missing (or not a folder). */
async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return [];
    throw error;
  });
}
