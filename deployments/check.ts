/**
 * @module
 * Checking a commit: every function built (build.ts) and started once (smoke.ts), every problem found
 * reported (not only the first), and the deployment recorded as `ready` or `refused`. A push is all or
 * nothing; the import of a functions folder is ready when one function passes, and holds the others as
 * broken, so that one bad function does not stop a first start from serving the rest.
 */
import { customAlphabet } from 'nanoid';
import { FnixError } from '../runtime/errors.ts';
import { secretUses } from '../runtime/functions/manifest.ts';
import type { FunctionVersion } from '../runtime/functions/version.ts';
import { describeClosure, HOST_STORE_SIZES, type StorePathSizes } from '../runtime/nix/closure.ts';
import { REPOSITORY_SET_FILE } from '../runtime/nix/repository-set.ts';
import { type BuiltCommit, buildCommit, replaceStaleContainers } from './build.ts';
import type { DeployContext, Progress } from './context.ts';
import type { Held } from './lock.ts';
import type { DeployedFunction, DeploymentRecord } from './records.ts';
import type { QuarantineEnv } from './repository.ts';
import { smokeCheckAll } from './smoke.ts';
import { FUNCTIONS_FOLDER, IGNORED_LISTED } from './tree.ts';

/** A checked deployment, and the built versions that activating it serves. */
export interface CheckedDeployment {
  record: DeploymentRecord;
  versions: FunctionVersion[];
}

/** What is checked: a push's commit, or the import of a functions folder. */
export interface CheckOptions {
  /** A push's quarantine (its objects are not in the repository yet). */
  env?: QuarantineEnv;
  progress?: Progress;
  source: 'push' | 'import';
  /** Measures each built function's closure, for its progress line. @default HOST_STORE_SIZES, the cache of the host's store */
  sizes?: StorePathSizes;
}

/** Deployment ids: `d-<date>-<8 characters>`, easy to read out and to type. */
const deploymentSuffix = customAlphabet('0123456789abcdefghijkmnopqrstuvwxyz', 8);

/** Checks and builds `commit` and records the deployment, `ready` or `refused`. */
export async function checkCommit(ctx: DeployContext, _held: Held, commit: string, options: CheckOptions): Promise<CheckedDeployment> {
  const env = options.env ?? {};
  const progress = options.progress ?? (() => {});
  const begin = performance.now();
  const id = `d-${new Date().toISOString().slice(0, 10).replaceAll('-', '')}-${deploymentSuffix()}`;
  const subject = await ctx.repository.subject(commit, env);
  progress(`deployment ${id}: commit ${commit.slice(0, 12)} "${subject}"`);
  // A built function's line waits for its closure to be measured; the lines after it wait their turn.
  let lines = Promise.resolve();
  const inTurn = (line: () => string | Promise<string>) => {
    lines = lines.then(async () => progress(await line()));
  };
  const built = await buildCommit(ctx, commit, env, `${id}-`, {
    // A Nix build can take minutes: the pusher sees which function it is at.
    onBuildStart: (name) => inTurn(() => `${FUNCTIONS_FOLDER}/${name}: building...`),
    onBuild: (name, outcome, duration) =>
      inTurn(async () =>
        'version' in outcome
          ? `${FUNCTIONS_FOLDER}/${name}: built in ${duration}, ${await closureOf(outcome.version, options.sizes ?? HOST_STORE_SIZES)} ` +
            `(packages: ${outcome.version.resolution.packages.map((p) => `${p.attr} ${p.storePath}`).join(', ') || 'none'})`
          : `${FUNCTIONS_FOLDER}/${name}: FAILED after ${duration}`,
      ),
    onPackageFile: (oid) => inTurn(() => `${REPOSITORY_SET_FILE}: the package set of this commit (blob ${oid.slice(0, 12)}), evaluated restricted`),
  });
  await lines;
  const { tree } = built;
  const { problems, broken } = problemsOf(built);
  const partial = options.source === 'import';
  const wholeTree = built.problems.has('') || tree.names.length === 0;
  for (const path of tree.ignored.slice(0, IGNORED_LISTED)) progress(`${path}: not inside a function's folder, ignored`);
  if (tree.ignored.length > IGNORED_LISTED) progress(`... and ${tree.ignored.length - IGNORED_LISTED} more files outside function folders, ignored`);
  // Before the smoke checks, which would start the function without its secret.
  for (const [name, error] of missingSecrets(ctx, built.versions)) {
    problems.push(error.message);
    broken.set(name, error);
  }
  let versions = built.versions.filter((version) => !broken.has(version.name));
  if (problems.length === 0 || (partial && !wholeTree)) {
    replaceStaleContainers(ctx, versions);
    for (const [name, problem] of await smokeCheckAll(ctx, versions, progress)) {
      problems.push(problem);
      broken.set(name, new FnixError('FUNCTION_BUILD_FAILED', problem));
    }
    versions = versions.filter((version) => !broken.has(version.name));
  }
  const ready = problems.length === 0 || (partial && !wholeTree && versions.length > 0);
  const record: DeploymentRecord = {
    id,
    commit,
    subject,
    createdAt: new Date().toISOString(),
    source: options.source,
    result: ready ? 'ready' : 'refused',
    reason: problems.length === 0 ? undefined : problems.join('\n'),
    ...(built.packageFile ? { packageFile: built.packageFile } : {}),
    functions: versions.map(describeVersion),
    ...(ready && broken.size > 0 ? { broken: [...broken].map(([name, error]) => ({ name, code: error.code, problem: error.message })) } : {}),
    activations: [],
  };
  await ctx.store.save(record);
  if (ready) {
    ctx.prepared.set(id, { versions, broken }, performance.now() - begin);
  } else {
    ctx.onDeployment('refused', performance.now() - begin);
    ctx.log.warn('deployment refused', { id, commit, problems: problems.length });
  }
  return { record, versions };
}

/**
 * The functions among `versions` that declare a secret that is not set, each with its SECRET_MISSING
 * naming the function, the secrets and the fix, as the pusher reads it (`functions/<name>: ...`).
 */
export function missingSecrets(ctx: Pick<DeployContext, 'secretNames'>, versions: readonly FunctionVersion[]): Map<string, FnixError> {
  const set = ctx.secretNames();
  const missing = new Map<string, FnixError>();
  for (const version of versions) {
    const unset = secretUses(version.manifest)
      .map((use) => use.name)
      .filter((name) => !set.has(name));
    if (unset.length === 0) continue;
    const them = unset.length === 1 ? `the secret ${unset[0]}, which is not set` : `the secrets ${unset.join(', ')}, which are not set`;
    const fix = unset.map((name) => `\`fnix secret set ${name}\``).join(', ');
    missing.set(
      version.name,
      new FnixError(
        'SECRET_MISSING',
        `${FUNCTIONS_FOLDER}/${version.name}: declares ${them}; set ${unset.length === 1 ? 'it' : 'them'} first with ${fix} (PUT /api/secrets/<NAME>), then push again`,
        {
          details: { function: version.name, secrets: unset },
        },
      ),
    );
  }
  return missing;
}

/** `closure 3 paths, 8.6 MiB`; the size is what a push reports, so a failure to measure it is said, not thrown. */
async function closureOf(version: FunctionVersion, sizes: StorePathSizes): Promise<string> {
  try {
    return `closure ${describeClosure(await sizes.measure(version.resolution.closure))}`;
  } catch (error) {
    const { length } = version.resolution.closure;
    return `closure ${length} ${length === 1 ? 'path' : 'paths'}, size unknown (${error instanceof Error ? error.message : String(error)})`;
  }
}

/** Every problem the build found, as the pusher reads them, and each broken function with its error. */
function problemsOf(built: BuiltCommit): { problems: string[]; broken: Map<string, FnixError> } {
  const problems: string[] = [];
  const broken = new Map<string, FnixError>();
  for (const [name, found] of built.problems) {
    problems.push(...found);
    if (name) broken.set(name, new FnixError('FUNCTION_BUILD_FAILED', found.join('\n')));
  }
  for (const [name, failure] of built.failed) {
    problems.push(failure.text);
    broken.set(name, new FnixError(failure.error instanceof FnixError ? failure.error.code : 'FUNCTION_BUILD_FAILED', failure.text));
  }
  if (built.tree.names.length === 0) {
    problems.push(`${FUNCTIONS_FOLDER}/ holds no function: each function is a folder ${FUNCTIONS_FOLDER}/<name>/ with a function.json`);
  }
  return { problems, broken };
}

/** What the record keeps of a built version. */
function describeVersion(version: FunctionVersion): DeployedFunction {
  const { manifest } = version;
  return {
    name: version.name,
    version: version.version,
    packages: version.resolution.packages.map((p) => p.attr),
    storePaths: version.resolution.packages.map((p) => p.storePath),
    rootKey: version.resolution.rootKey,
    command: manifest.command,
    limits: {
      timeoutMs: manifest.timeoutMs,
      memoryMb: manifest.memoryMb,
      network: manifest.network,
      sessionTimeoutMs: manifest.sessionTimeoutMs,
      idleTimeoutMs: manifest.idleTimeoutMs,
    },
  };
}
