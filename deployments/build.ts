/**
 * @module
 * Building a commit: its functions/ read from git (tree.ts) into a staging folder of its own, and every
 * function built there (manifest, Nix packages, command, files), in the package set the commit carries
 * (packages.nix, read by package-file.ts into a folder of its own) or else the default one. Both a push's
 * check and the rebuild of a recorded deployment (restore, rollback) build this way; a rebuild serves the
 * store paths its record names again, as long as the store has them.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FnixError } from '../runtime/errors.ts';
import { describeFsError, errnoCode } from '../runtime/fs-errors.ts';
import { buildFunction } from '../runtime/functions/build.ts';
import type { FunctionVersion } from '../runtime/functions/version.ts';
import { checkPackageSet, type PackageSet } from '../runtime/nix/package-set.ts';
import { REPOSITORY_SET_FILE } from '../runtime/nix/repository-set.ts';
import type { DeployContext } from './context.ts';
import { type PackageFile, readPackageFile } from './package-file.ts';
import type { DeployedFunction, DeploymentRecord } from './records.ts';
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
  /** The git blob id of the commit's packages.nix, when it carries one (its functions' package set). */
  packageFile?: string | undefined;
}

/** Told of each function's build, for a push's progress. */
export interface BuildReporter {
  onBuildStart?: (name: string) => void;
  onBuild?: (name: string, outcome: { version: FunctionVersion } | { error: unknown }, duration: string) => void;
  /** The commit carries its package set: packages.nix, as this blob. */
  onPackageFile?: (oid: string) => void;
}

/**
 * Reads `commit`'s functions/ into a staging folder of its own (removed after) and builds every
 * function whose files passed the tree's checks, so that one push reports every problem it has.
 * `recorded`, the record of the deployment being rebuilt: each function's recorded store paths are served
 * again while the store has them, and its packages resolved afresh (with a warning) when it does not.
 */
export async function buildCommit(
  ctx: DeployContext,
  commit: string,
  env: QuarantineEnv,
  stagingPrefix: string,
  report: BuildReporter = {},
  recorded?: DeploymentRecord,
): Promise<BuiltCommit> {
  const versions: FunctionVersion[] = [];
  const failed = new Map<string, { error: unknown; text: string }>();
  const tree = await readFunctionsTree(ctx.repository, commit, env);
  const problems = new Map(tree.problems);
  if (tree.problems.has('')) return { tree, problems, versions, failed };
  const packageFile = await readPackageFile(ctx.repository, commit, env);
  if (packageFile.kind === 'problem') problems.set('', [packageFile.problem]);
  if (problems.has('')) return { tree, problems, versions, failed };
  const oid = packageFile.kind === 'file' ? packageFile.oid : undefined;
  if (oid) report.onPackageFile?.(oid);
  const staging = await mkdtemp(join(ctx.stagingDir, stagingPrefix));
  let setDir: string | undefined;
  try {
    let written: Map<string, string[]>;
    try {
      written = await writeFunctionsTree(ctx.repository, tree, staging, env);
    } catch (error) {
      // A file that could not be written (a full disk, say) stops the whole deployment, named.
      if (!(error instanceof TreeWriteError)) throw error;
      problems.set('', [error.message]);
      return { tree, problems, versions, failed, packageFile: oid };
    }
    if (packageFile.kind === 'file') setDir = await mkdtemp(join(ctx.stagingDir, `${stagingPrefix}nix-`));
    const set = await preparePackageSet(ctx, packageFile, setDir, recorded === undefined);
    if ('problem' in set) {
      problems.set('', [set.problem]);
      return { tree, problems, versions, failed, packageFile: oid };
    }
    for (const [name, found] of written) problems.set(name, found);
    const recordedFunctions = new Map((recorded?.functions ?? []).map((f) => [f.name, f]));
    for (const name of tree.names.filter((n) => !problems.has(n))) {
      const started = performance.now();
      report.onBuildStart?.(name);
      const before = recordedFunctions.get(name);
      try {
        const version = await buildFunction({
          name,
          sourceDir: join(staging, name),
          buildsDir: ctx.buildsDir,
          resolver: ctx.resolver,
          packageSet: set.packageSet,
          recorded: before,
        });
        if (before) warnIfResolvedAgain(ctx, recorded!, before, version);
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
    if (setDir) await rm(setDir, { recursive: true, force: true });
  }
  return { tree, problems, versions, failed, packageFile: oid };
}

/**
 * The package set of the commit's functions: the resolver's own, or its packages.nix written into `setDir`
 * and made a restricted set there. A push's packages.nix is evaluated once here (`check`), so that one that does
 * not evaluate is one problem, named once; a rebuild does not, as its functions may need no evaluation at all.
 */
async function preparePackageSet(
  ctx: DeployContext,
  file: PackageFile,
  setDir: string | undefined,
  check: boolean,
): Promise<{ packageSet: PackageSet | undefined } | { problem: string }> {
  if (file.kind !== 'file' || !setDir) return { packageSet: undefined };
  try {
    await writeFile(join(setDir, REPOSITORY_SET_FILE), file.content, { flag: 'wx', mode: 0o644 });
    const packageSet = await ctx.resolver.repositorySet(setDir, file.oid);
    if (check) await checkPackageSet(packageSet);
    return { packageSet };
  } catch (error) {
    if (error instanceof FnixError) return { problem: error.message };
    // A full disk, say, while it or `<fnix>` beside it was written.
    if (errnoCode(error)) return { problem: `${REPOSITORY_SET_FILE}: could not be written: ${describeFsError(error)}` };
    throw error;
  }
}

/** Says so when a rebuilt function's recorded store paths could not be served again (the store lost them). */
function warnIfResolvedAgain(ctx: DeployContext, record: DeploymentRecord, before: DeployedFunction, version: FunctionVersion): void {
  if (before.packages.length === 0 || version.resolution.reused) return;
  const now = version.resolution.packages.map((p) => p.storePath);
  ctx.log.warn("a function's recorded store paths are gone from the store; its packages were resolved again", {
    deployment: record.id,
    function: before.name,
    recorded: before.storePaths.join(' '),
    now: now.join(' '),
    same: now.join(' ') === before.storePaths.join(' '),
  });
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
