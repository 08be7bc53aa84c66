/**
 * @module
 * Serving what a deployment recorded again (a rollback, the restart that serves the active deployment): when
 * the store still has every store path its record names, and their closure, they are served as they are, with
 * GC roots for them, and Nix evaluates nothing. The same commit then serves exactly the closures it served
 * before, whatever its package set (or FNIX_PACKAGES) resolves to today.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { RunNix } from './sandbox.ts';

/** What a deployment recorded for one function: its package list and the store path each resolved to. */
export interface RecordedPackages {
  /** The attribute paths, in the order resolved (duplicates removed). */
  packages: readonly string[];
  /** The store path of each, in the same order. */
  storePaths: readonly string[];
  /** The GC roots that keep them (`<gcRootsDir>/<rootKey>/`). */
  rootKey: string;
}

/** Options of {@link reuseRecorded}. */
export interface ReuseOptions {
  /** The package list asked for now, validated and without duplicates. */
  attrs: readonly string[];
  recorded: RecordedPackages;
  gcRootsDir: string;
  run: RunNix;
  timeoutMs: number;
}

/** A store path, as a record may name one. */
const STORE_PATH_PATTERN = /^\/nix\/store\/[0-9a-z]{32}-[^/]+$/;

/** Root keys are 32 lowercase hex digits (resolve.ts names them so). */
const ROOT_KEY_PATTERN = /^[0-9a-f]{32}$/;

/**
 * The recorded store paths and their closure (sorted), when the record is of the same list and the store still
 * has every path, valid, with its closure; GC roots are registered for those that have none. Undefined when the
 * record cannot be served again, and the list must be resolved afresh.
 */
export async function reuseRecorded(options: ReuseOptions): Promise<{ storePaths: string[]; closure: string[] } | undefined> {
  const { attrs, recorded, run, timeoutMs } = options;
  const { storePaths, rootKey } = recorded;
  const sameList = recorded.packages.length === attrs.length && attrs.every((attr, i) => recorded.packages[i] === attr);
  if (!sameList || storePaths.length !== attrs.length || !ROOT_KEY_PATTERN.test(rootKey)) return undefined;
  if (!storePaths.every((p) => STORE_PATH_PATTERN.test(p) && existsSync(p))) return undefined;
  // Fails for a path that exists but is not valid (a half-deleted one), or whose closure is not.
  const closure = await run('nix-store', ['--query', '--requisites', ...new Set(storePaths)], timeoutMs);
  if (!closure.ok) return undefined;
  if (!(await ensureRoots(path.join(options.gcRootsDir, rootKey), storePaths, run, timeoutMs))) return undefined;
  return {
    storePaths: [...storePaths],
    closure: closure.stdout
      .split('\n')
      .filter((line) => line !== '')
      .sort(),
  };
}

/**
 * Registers a GC root in `rootDir` for each of `storePaths` that has none there, as nix-build would (an indirect
 * root, `recorded-<hash>`); false when Nix could not.
 */
async function ensureRoots(rootDir: string, storePaths: readonly string[], run: RunNix, timeoutMs: number): Promise<boolean> {
  const rooted = new Set<string>();
  for (const entry of await readdir(rootDir).catch(() => [] as string[])) {
    const target = await readlink(path.join(rootDir, entry)).catch(() => undefined);
    if (target !== undefined) rooted.add(target);
  }
  const missing = [...new Set(storePaths)].filter((p) => !rooted.has(p));
  if (missing.length > 0) await mkdir(rootDir, { recursive: true });
  for (const storePath of missing) {
    const link = path.join(rootDir, `recorded-${path.basename(storePath).slice(0, 32)}`);
    const added = await run('nix-store', ['--option', 'substituters', '', '--realise', storePath, '--add-root', link, '--indirect'], timeoutMs);
    if (!added.ok) return false;
  }
  return true;
}
