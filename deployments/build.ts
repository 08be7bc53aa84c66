/**
 * @module
 * Building a commit: its functions/ read from git (tree.ts) into a staging folder of its own, and every
 * function built there (manifest, Nix packages, command, files). Both a push's check and the rebuild of
 * a recorded deployment (restore, rollback) build this way.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FnixError } from '../runtime/errors.ts';
import { describeFsError, errnoCode } from '../runtime/fs-errors.ts';
import { buildFunction } from '../runtime/functions/build.ts';
import type { FunctionVersion } from '../runtime/functions/version.ts';
import type { DeployContext } from './context.ts';
import type { QuarantineEnv } from './repository.ts';
import { FUNCTIONS_FOLDER, type FunctionsTree, readFunctionsTree, TreeWriteError, writeFunctionsTree } from './tree.ts';

/** What building a commit found. */
export interface BuiltCommit {
  tree: FunctionsTree;
  /** Problems of the tree, by function name; '' for the whole tree, which stops everything. */
  problems: Map<string, string[]>;
  versions: FunctionVersion[];
  /** Each failed build, with its error and its message as the pusher should read it. */
  failed: Map<string, { error: unknown; text: string }>;
}

/** Told of each function's build, for a push's progress. */
export interface BuildReporter {
  onBuildStart?: (name: string) => void;
  onBuild?: (name: string, outcome: { version: FunctionVersion } | { error: unknown }, duration: string) => void;
}

/**
 * Reads `commit`'s functions/ into a staging folder of its own (removed after) and builds every
 * function whose files passed the tree's checks, so that one push reports every problem it has.
 */
export async function buildCommit(
  ctx: DeployContext,
  commit: string,
  env: QuarantineEnv,
  stagingPrefix: string,
  report: BuildReporter = {},
): Promise<BuiltCommit> {
  const versions: FunctionVersion[] = [];
  const failed = new Map<string, { error: unknown; text: string }>();
  const tree = await readFunctionsTree(ctx.repository, commit, env);
  const problems = new Map(tree.problems);
  if (tree.problems.has('')) return { tree, problems, versions, failed };
  const staging = await mkdtemp(join(ctx.stagingDir, stagingPrefix));
  try {
    let written: Map<string, string[]>;
    try {
      written = await writeFunctionsTree(ctx.repository, tree, staging, env);
    } catch (error) {
      // A file that could not be written (a full disk, say) stops the whole deployment, named.
      if (!(error instanceof TreeWriteError)) throw error;
      problems.set('', [error.message]);
      return { tree, problems, versions, failed };
    }
    for (const [name, found] of written) problems.set(name, found);
    for (const name of tree.names.filter((n) => !problems.has(n))) {
      const started = performance.now();
      report.onBuildStart?.(name);
      try {
        const version = await buildFunction({ name, sourceDir: join(staging, name), buildsDir: ctx.buildsDir, resolver: ctx.resolver });
        versions.push(version);
        report.onBuild?.(name, { version }, seconds(started));
      } catch (error) {
        const text = describeBuildError(error, staging);
        // Every problem names its file, or at least its function.
        failed.set(name, { error, text: text.startsWith(`${FUNCTIONS_FOLDER}/`) ? text : `${FUNCTIONS_FOLDER}/${name}: ${text}` });
        report.onBuild?.(name, { error }, seconds(started));
      }
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return { tree, problems, versions, failed };
}

/** Containers that started before builds added store paths may not see them: they are replaced. */
export function replaceStaleContainers(ctx: DeployContext, versions: FunctionVersion[]): void {
  if (versions.some((v) => v.resolution.builtNewPaths)) ctx.pool.markStoreChanged();
}

/** A build error, with paths as the pusher knows them (`functions/<name>/...`) and Nix's output tail. */
function describeBuildError(error: unknown, staging: string): string {
  const fnixError = error instanceof FnixError ? error : undefined;
  // A write of the build that failed outside fnix (a full disk): said in words, without fnix's paths.
  let text = fnixError ? `${fnixError.message}` : errnoCode(error) ? describeFsError(error) : String((error as Error)?.message ?? error);
  const log = fnixError?.details['log'];
  if (typeof log === 'string' && log.trim()) {
    text += `\nthe end of the build output:\n${log
      .trim()
      .split('\n')
      .slice(-15)
      .map((line) => `  ${line}`)
      .join('\n')}`;
  }
  return text.replaceAll(`${staging}/`, `${FUNCTIONS_FOLDER}/`);
}

/** Seconds since `since`, as progress lines say them. */
export function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}
