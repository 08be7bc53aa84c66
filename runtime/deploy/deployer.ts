/**
 * @module
 * Deployments: a commit's functions/ is read from git, every function built (manifest, Nix packages,
 * command) and started once, and only then may the whole set be activated, at once. Also: the history
 * (records.ts), rollback to any earlier ready deployment, the restore at start, and the first import of
 * a functions folder. The lock (lock.ts) keeps one deployment at a time.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { customAlphabet } from 'nanoid';
import { FnixError } from '../errors.ts';
import { describeFsError, errnoCode } from '../fs-errors.ts';
import { buildFunction } from '../functions/build.ts';
import type { FunctionRegistry } from '../functions/registry.ts';
import type { FunctionVersion } from '../functions/version.ts';
import type { Logger } from '../log.ts';
import type { PackageResolver } from '../nix/resolve.ts';
import type { Pool } from '../pool/pool.ts';
import type { Runner } from '../runner.ts';
import { DEPLOY_REF, ZERO_OID, type QuarantineEnv, type Repository } from './git.ts';
import { DeployLock } from './lock.ts';
import type { DeployedFunction, DeploymentRecord, DeploymentStore } from './records.ts';
import { smokeCheck } from './smoke.ts';
import { FUNCTIONS_FOLDER, IGNORED_LISTED, readFunctionsTree, TreeWriteError, writeFunctionsTree } from './tree.ts';

/** Told each line of a deployment's progress (a push shows them as `remote:` lines). */
export type Progress = (line: string) => void;

/** Options of {@link Deployer}. */
export interface DeployerOptions {
  repository: Repository;
  store: DeploymentStore;
  resolver: PackageResolver;
  runner: Runner;
  registry: FunctionRegistry;
  pool: Pool;
  /** `<state>/builds`, where function builds are kept. */
  buildsDir: string;
  /** Where a commit's files are written while it is checked. */
  stagingDir: string;
  log: Logger;
  /** Deployment records kept; older ones (never the active one) go, with their GC roots. @default 50 */
  historyLimit?: number;
  /** Told how each deployment went, for the metrics. */
  onDeployment?: ((outcome: 'activated' | 'partial' | 'refused', durationMs: number) => void) | undefined;
}

/** A checked deployment, and the built versions that activating it serves. */
export interface CheckedDeployment {
  record: DeploymentRecord;
  versions: FunctionVersion[];
}

/** What activating a deployment serves: its built versions, and the functions it holds broken. */
interface Prepared {
  versions: FunctionVersion[];
  broken: Map<string, FnixError>;
}

const DEFAULT_HISTORY_LIMIT = 50;
/** Deployment ids: `d-<date>-<8 characters>`, easy to read out and to type. */
const deploymentSuffix = customAlphabet('0123456789abcdefghijkmnopqrstuvwxyz', 8);
/** Built versions kept in memory for activation; older deployments are rebuilt (from cache) when activated. */
const PREPARED_KEPT = 4;
/** Where each activated deployment's commit is kept (hidden from clients: transfer.hideRefs). */
const DEPLOYMENT_REFS = 'refs/fnix/deployments/';

/** Deploys commits. */
export class Deployer {
  readonly lock = new DeployLock();
  readonly #options: DeployerOptions;
  readonly #prepared = new Map<string, Prepared>();
  /** How long each ready deployment's checks took, counted into its activation's duration. */
  readonly #checkMs = new Map<string, number>();

  constructor(options: DeployerOptions) {
    this.#options = options;
  }

  get repository(): Repository {
    return this.#options.repository;
  }

  get store(): DeploymentStore {
    return this.#options.store;
  }

  /**
   * Checks and builds `commit` (its objects may still be in a push's quarantine: `env`), and records the
   * deployment as `ready` or `refused`. Every problem found is reported, not only the first. A push is
   * all or nothing; the import of a functions folder (`source: 'import'`) is ready when one function
   * passes, and holds the others as broken, so that one bad function does not stop a first start from
   * serving the rest. The caller holds the lock.
   */
  async check(commit: string, options: { env?: QuarantineEnv; progress?: Progress; source: 'push' | 'import' }): Promise<CheckedDeployment> {
    const { repository, store } = this.#options;
    const env = options.env ?? {};
    const progress = options.progress ?? (() => {});
    const begin = performance.now();
    const id = `d-${new Date().toISOString().slice(0, 10).replaceAll('-', '')}-${deploymentSuffix()}`;
    const subject = await repository.subject(commit, env);
    progress(`deployment ${id}: commit ${commit.slice(0, 12)} "${subject}"`);
    const problems: string[] = [];
    const built = await this.#buildCommit(
      commit,
      env,
      `${id}-`,
      (name, outcome, ms) =>
        progress(
          'version' in outcome
            ? `${FUNCTIONS_FOLDER}/${name}: built in ${ms} (packages: ${outcome.version.resolution.packages.map((p) => `${p.attr} ${p.storePath}`).join(', ') || 'none'})`
            : `${FUNCTIONS_FOLDER}/${name}: FAILED after ${ms}`,
        ),
      // A Nix build can take minutes: the pusher sees which function it is at.
      (name) => progress(`${FUNCTIONS_FOLDER}/${name}: building...`),
    );
    const { tree } = built;
    let versions = built.versions;
    const partial = options.source === 'import';
    // Each broken function, with its problem as the pusher reads it.
    const broken = new Map<string, FnixError>();
    for (const [name, found] of built.problems) {
      problems.push(...found);
      if (name) broken.set(name, new FnixError('FUNCTION_BUILD_FAILED', found.join('\n')));
    }
    for (const [name, failure] of built.failed) {
      problems.push(failure.text);
      broken.set(name, new FnixError(failure.error instanceof FnixError ? failure.error.code : 'FUNCTION_BUILD_FAILED', failure.text));
    }
    const wholeTree = built.problems.has('') || tree.names.length === 0;
    if (tree.names.length === 0) {
      problems.push(`${FUNCTIONS_FOLDER}/ holds no function: each function is a folder ${FUNCTIONS_FOLDER}/<name>/ with a function.json`);
    }
    for (const path of tree.ignored.slice(0, IGNORED_LISTED)) progress(`${path}: not inside a function's folder, ignored`);
    if (tree.ignored.length > IGNORED_LISTED) progress(`... and ${tree.ignored.length - IGNORED_LISTED} more files outside function folders, ignored`);
    if (problems.length === 0 || (partial && !wholeTree)) {
      this.#replaceStaleContainers(versions);
      for (const version of versions) {
        const started = performance.now();
        const problem = await smokeCheck(this.#options.runner, version);
        if (problem) {
          problems.push(`${FUNCTIONS_FOLDER}/${version.name}: ${problem}`);
          broken.set(version.name, new FnixError('FUNCTION_BUILD_FAILED', `${FUNCTIONS_FOLDER}/${version.name}: ${problem}`));
        } else {
          progress(`${FUNCTIONS_FOLDER}/${version.name}: started in a container (${seconds(started)})`);
        }
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
      functions: versions.map(describeVersion),
      ...(ready && broken.size > 0 ? { broken: [...broken].map(([name, error]) => ({ name, code: error.code, problem: error.message })) } : {}),
      activations: [],
    };
    await store.save(record);
    if (record.result === 'ready') {
      this.#checkMs.set(id, performance.now() - begin);
      this.#prepared.set(id, { versions, broken });
      for (const old of [...this.#prepared.keys()].slice(0, -PREPARED_KEPT)) {
        this.#prepared.delete(old);
        this.#checkMs.delete(old);
      }
    } else {
      this.#options.onDeployment?.('refused', performance.now() - begin);
      this.#options.log.warn('deployment refused', { id, commit, problems: problems.length });
    }
    return { record, versions };
  }

  /**
   * Makes deployment `id` the one served: the record first (durably), then the registry, in one swap.
   * Invocations under way finish on the version they started with; idle containers of versions no
   * longer served go. The caller holds the lock.
   */
  async activate(id: string): Promise<DeploymentRecord> {
    const begin = performance.now();
    const { store, registry, pool, log } = this.#options;
    const record = await store.get(id);
    if (!record) throw new FnixError('DEPLOYMENT_NOT_FOUND', `no deployment ${JSON.stringify(id)}; GET /api/deployments lists them`);
    if (record.result !== 'ready') {
      throw new FnixError('DEPLOYMENT_REFUSED', `deployment ${id} was refused, so it cannot be activated: ${record.reason ?? ''}`, {
        details: { deployment: id },
      });
    }
    if (!(await this.#options.repository.has(record.commit))) {
      // It passed its checks, but git did not take the push (it died, or main moved): the objects are gone.
      throw new FnixError(
        'DEPLOYMENT_REFUSED',
        `deployment ${id} never went live, and its commit ${record.commit.slice(0, 12)} is not in the repository; push it again`,
        {
          details: { deployment: id },
        },
      );
    }
    let prepared = this.#prepared.get(id);
    if (!prepared) {
      // An older deployment: built again from its commit (quick, from Nix's store and the build cache).
      prepared = await this.#rebuild(record);
      const failed = newlyBroken(record, prepared.broken);
      if (failed) {
        throw new FnixError('DEPLOYMENT_REFUSED', `deployment ${id} can no longer be built: ${failed[0]}: ${failed[1].message}`, {
          details: { deployment: id },
        });
      }
    }
    const { versions, broken } = prepared;
    // A ref of its own keeps the commit through a force-push and `git gc`, so that a rollback finds it.
    // Set before the record says it is active; a failure to set it costs that protection only.
    const pinned = await this.#options.repository.git(['update-ref', `${DEPLOYMENT_REFS}${id}`, record.commit], { reject: false });
    if (pinned.exitCode !== 0) log.warn("the deployment's commit could not be kept by a ref of its own", { id, error: String(pinned.stderr).trim() });
    if (!(await store.activate(record, new Date()))) log.warn('the deployment is active, but its record could not be updated with the time', { id });
    registry.replaceAll(versions, broken);
    pool.serve(versions.map((v) => v.key));
    // Live by now: tidying the history must not make the activation look failed.
    await this.#pruneHistory(id).catch((error: unknown) => log.warn('pruning the deployment history failed', { error: String(error) }));
    for (const [name, error] of broken) log.error('function not served', { function: name, code: error.code, error: error.message });
    // A push counts from the start of its checks; a rollback, its activation alone.
    this.#options.onDeployment?.(broken.size > 0 ? 'partial' : 'activated', (this.#checkMs.get(id) ?? 0) + performance.now() - begin);
    this.#checkMs.delete(id);
    log.info('deployment active', { id, commit: record.commit.slice(0, 12), functions: versions.map((v) => v.name).join(',') });
    return record;
  }

  /** Drops what a check prepared for deployment `id`: its push was given up, and its commit with it. */
  forget(id: string): void {
    this.#prepared.delete(id);
    this.#checkMs.delete(id);
  }

  /**
   * At start: serves the active deployment again, rebuilt from its commit (Nix and the builds are
   * cached, so this is quick). A function that no longer builds is reported as broken. Returns the
   * record, or undefined when there is no active deployment.
   */
  async restore(): Promise<DeploymentRecord | undefined> {
    const { store, registry, pool, log } = this.#options;
    const id = await store.current();
    const record = id === undefined ? undefined : await store.get(id);
    if (!record) return undefined;
    const { versions, broken } = await this.#rebuild(record);
    registry.replaceAll(versions, broken);
    pool.serve(versions.map((v) => v.key));
    for (const [name, error] of broken) log.error('function not served', { function: name, code: error.code, error: error.message });
    // Served by now: tidying the history must not undo that.
    await this.#pruneHistory(record.id).catch((error: unknown) => log.warn('pruning the deployment history failed', { error: String(error) }));
    log.info('deployment restored', { id: record.id, commit: record.commit.slice(0, 12), functions: versions.length, broken: broken.size });
    return record;
  }

  /**
   * At first start, with an empty repository: `dir` becomes the first commit of main, and is deployed
   * through the same checks as a push. When they fail nothing is served, main stays unborn, and the
   * next start tries again.
   */
  async importFolder(dir: string, progress: Progress): Promise<CheckedDeployment> {
    const { repository } = this.#options;
    const work = await mkdtemp(join(this.#options.stagingDir, 'import-'));
    try {
      await cp(dir, join(work, FUNCTIONS_FOLDER), { recursive: true, verbatimSymlinks: true });
      const env = { GIT_INDEX_FILE: join(work, '.index'), GIT_WORK_TREE: work } as QuarantineEnv;
      // --force: the folder is taken as it is, files its .gitignore names included.
      await repository.git(['add', '--all', '--force', '--', FUNCTIONS_FOLDER], { env });
      const tree = String((await repository.git(['write-tree'], { env })).stdout).trim();
      const identity = { GIT_AUTHOR_NAME: 'fnix', GIT_AUTHOR_EMAIL: 'fnix@localhost', GIT_COMMITTER_NAME: 'fnix', GIT_COMMITTER_EMAIL: 'fnix@localhost' };
      const commit = String(
        (await repository.git(['commit-tree', tree, '-m', `Functions imported from ${dir}`], { env: identity as QuarantineEnv })).stdout,
      ).trim();
      const held = await this.lock.acquire('the first import', 60_000);
      try {
        const checked = await this.check(commit, { progress, source: 'import' });
        if (checked.record.result === 'ready') {
          // Only while main is still unborn: a push that landed meanwhile wins, and is what is served.
          const updated = await repository.git(['update-ref', DEPLOY_REF, commit, ZERO_OID], { reject: false });
          if (updated.exitCode === 0) await this.activate(checked.record.id);
          else this.#options.log.warn('main was created meanwhile; the import is not activated', { deployment: checked.record.id });
        }
        return checked;
      } finally {
        held.release();
      }
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** Builds a recorded deployment's commit again (no smoke check: it passed before). */
  async #rebuild(record: DeploymentRecord): Promise<Prepared> {
    const { versions, problems, failed } = await this.#buildCommit(record.commit, {}, `${record.id}-rebuild-`);
    this.#replaceStaleContainers(versions);
    const broken = new Map<string, FnixError>();
    for (const [name, found] of problems) if (name) broken.set(name, new FnixError('FUNCTION_BUILD_FAILED', found.join('; ')));
    for (const [name, { error }] of failed) {
      broken.set(name, error instanceof FnixError ? error : new FnixError('FUNCTION_BUILD_FAILED', String(error), { cause: error }));
    }
    // Functions that failed their smoke check at import are held broken again, not served.
    for (const { name, code, problem } of record.broken ?? []) {
      if (!broken.has(name)) broken.set(name, new FnixError(code, problem));
    }
    const served = versions.filter((version) => !broken.has(version.name));
    if (!newlyBroken(record, broken)) this.#prepared.set(record.id, { versions: served, broken });
    return { versions: served, broken };
  }

  /**
   * Reads `commit`'s functions/ into a staging folder of its own and builds every function whose files
   * passed the tree's checks, telling `onBuild` of each. Returns the tree, its problems by function
   * ('' for the whole tree, which stops everything), the versions built, and each failed build with
   * its error and its message as the pusher should read it.
   */
  async #buildCommit(
    commit: string,
    env: QuarantineEnv,
    stagingPrefix: string,
    onBuild?: (name: string, outcome: { version: FunctionVersion } | { error: unknown }, duration: string) => void,
    onBuildStart?: (name: string) => void,
  ) {
    const { repository } = this.#options;
    const versions: FunctionVersion[] = [];
    const failed = new Map<string, { error: unknown; text: string }>();
    const tree = await readFunctionsTree(repository, commit, env);
    const problems = new Map(tree.problems);
    if (tree.problems.has('')) return { tree, problems, versions, failed };
    const staging = await mkdtemp(join(this.#options.stagingDir, stagingPrefix));
    try {
      let written: Map<string, string[]>;
      try {
        written = await writeFunctionsTree(repository, tree, staging, env);
      } catch (error) {
        // A file that could not be written (a full disk, say) stops the whole deployment, named.
        if (!(error instanceof TreeWriteError)) throw error;
        problems.set('', [error.message]);
        return { tree, problems, versions, failed };
      }
      for (const [name, found] of written) problems.set(name, found);
      // Every function is built, so that one push reports every problem it has.
      for (const name of tree.names.filter((n) => !problems.has(n))) {
        const started = performance.now();
        onBuildStart?.(name);
        try {
          const version = await buildFunction({ name, sourceDir: join(staging, name), buildsDir: this.#options.buildsDir, resolver: this.#options.resolver });
          versions.push(version);
          onBuild?.(name, { version }, seconds(started));
        } catch (error) {
          const text = describeBuildError(error, staging);
          // Every problem names its file, or at least its function.
          failed.set(name, { error, text: text.startsWith(`${FUNCTIONS_FOLDER}/`) ? text : `${FUNCTIONS_FOLDER}/${name}: ${text}` });
          onBuild?.(name, { error }, seconds(started));
        }
      }
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    return { tree, problems, versions, failed };
  }

  /** Containers that started before builds added store paths may not see them: they are replaced. */
  #replaceStaleContainers(versions: FunctionVersion[]): void {
    if (versions.some((v) => v.resolution.builtNewPaths)) this.#options.pool.markStoreChanged();
  }

  /** Keeps the newest `historyLimit` records (and the active one), and the GC roots of the ready ones. */
  async #pruneHistory(activeId: string): Promise<void> {
    const { store, resolver } = this.#options;
    const limit = this.#options.historyLimit ?? DEFAULT_HISTORY_LIMIT;
    const records = await store.list();
    const kept: DeploymentRecord[] = [];
    for (const [index, record] of records.entries()) {
      if (index < limit || record.id === activeId) kept.push(record);
      else {
        await store.remove(record.id);
        await this.#options.repository.git(['update-ref', '-d', `${DEPLOYMENT_REFS}${record.id}`], { reject: false });
      }
    }
    await resolver.pruneRoots(kept.filter((r) => r.result === 'ready').flatMap((r) => r.functions.map((f) => f.rootKey)));
  }
}

/** A function broken now that the record did not hold broken when it passed its checks, if any. */
function newlyBroken(record: DeploymentRecord, broken: ReadonlyMap<string, FnixError>): [string, FnixError] | undefined {
  return [...broken].find(([name]) => !record.broken?.some((b) => b.name === name));
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

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}
