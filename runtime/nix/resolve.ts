/**
 * @module
 * Turns a manifest's `packages` (Nix attribute paths such as `gojq` or `python3Packages.requests`) into store
 * paths: evaluates them in the chosen {@link PackageSet} (the resolver's own, or a pushed repository's, per call)
 * through runtime/nix/resolve.nix, builds what is missing in Nix's sandbox, registers GC roots so
 * nix-collect-garbage keeps them, and reports the PATH and the runtime closure a container needs. A pushed set is
 * evaluated restricted and its builds are checked first (repository-set.ts, sandbox.ts). Results are cached per
 * set and package list; concurrent requests share one build; a deployment's recorded store paths are served
 * again without evaluating anything while the store has them.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readlink, rm, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LRUCache } from 'lru-cache';
import { FnixError } from '../errors.ts';
import { checkPackageSet, evaluationArgs, firstErrorLine, nixErrorLine, nixLog, tailLines, type PackageSet } from './package-set.ts';
import { type RecordedPackages, reuseRecorded } from './recorded.ts';
import { OfflineView, prepareRepositorySet } from './repository-set.ts';
import { checkBuildUsers, realiseChecked, SANDBOX_OPTIONS } from './sandbox.ts';
import { explainRefusedSubstitutes, Substituters } from './substituters.ts';

/** One requested package and the store path put on PATH for it. */
export interface ResolvedPackage {
  /** The attribute path as requested, e.g. `gojq`. */
  attr: string;
  /** The output put on PATH: the derivation's `bin` output when it has one, else its default output. */
  storePath: string;
}

/** What a package list resolved to. */
export interface Resolution {
  /** One entry per requested attribute, in request order, duplicates removed. */
  packages: ResolvedPackage[];
  /**
   * `${storePath}/bin` of every package, in request order, joined with `:`. Every package is listed, even one
   * without a bin/ folder (a library): a missing PATH entry is harmless and the order stays predictable.
   */
  binPath: string;
  /** Every store path in the runtime closure of the packages (`nix-store -qR`), sorted. */
  closure: string[];
  /**
   * True when this call had to realise outputs that were not in the store before (so containers started
   * earlier may not see them). False on a cache hit.
   */
  builtNewPaths: boolean;
  /** Names this package list's GC roots (`<gcRootsDir>/<rootKey>/`); pass it to {@link PackageResolver.pruneRoots}. */
  rootKey: string;
  /** True when a deployment's recorded store paths were served again, without evaluating Nix ({@link ResolveOptions.recorded}). */
  reused?: boolean;
}

/** Options of {@link PackageResolver.resolve}. */
export interface ResolveOptions {
  /** The set to resolve in, such as a repository's ({@link PackageResolver.repositorySet}). @default the resolver's own */
  packageSet?: PackageSet | undefined;
  /**
   * What a deployment served for the same list: served again as it was, without Nix evaluating anything, while the
   * store has every path (their GC roots keep them); resolved afresh otherwise, which `reused` tells.
   */
  recorded?: RecordedPackages | undefined;
}

/** Options of {@link PackageResolver}. */
export interface PackageResolverOptions {
  /** The package set to resolve in. */
  packageSet: PackageSet;
  /**
   * Directory under which GC roots are registered, one sub-directory per package list. They are indirect
   * roots (symlinks here, registered in /nix/var/nix/gcroots/auto), so deleting them releases the paths.
   */
  gcRootsDir: string;
  /** @default 256 */
  cacheMax?: number;
  /** Time limit of one nix-build run. @default 1_800_000 */
  buildTimeoutMs?: number;
  /** Time limit of one evaluation (nix-instantiate). @default 120_000 */
  evalTimeoutMs?: number;
  /**
   * The binary caches nix-build may fetch from: none for the offline set, else nix.conf's and the
   * operator's that answer a probe (runtime/nix/substituters.ts).
   * @default new Substituters(): nix.conf's caches and keys only, signatures required, nothing logged
   */
  substituters?: Substituters;
  /** FNIX_ALLOWED_URIS: URL prefixes that a pushed set's evaluations may fetch from. @default [] (none) */
  allowedUris?: readonly string[];
  /** What pushed sets see as `<fnix>`. @default new OfflineView(): the offline set */
  offlineView?: OfflineView;
}

/** Counters for logs and tests. */
export interface PackageResolverStats {
  /** Nix processes spawned so far (evaluations, builds, closure queries). */
  nixProcesses: number;
  /** Package lists actually resolved with Nix (cache misses that ran), successful or not. */
  resolutions: number;
  /** Package lists served from a deployment's recorded store paths, without evaluating Nix. */
  reused: number;
}

/** Nix attribute paths fnix accepts in manifests: dot-separated identifiers, no quoting. */
export const ATTRIBUTE_PATH_PATTERN = /^[A-Za-z_][A-Za-z0-9_'-]*(\.[A-Za-z_][A-Za-z0-9_'-]*)*$/;

/** Longest attribute path accepted. */
const MAX_ATTRIBUTE_PATH_LENGTH = 200;

/** Lines of Nix output kept for error details. */
const LOG_TAIL_LINES = 40;

/** Root keys are 32 lowercase hex digits; nothing else under gcRootsDir is ever deleted. */
const ROOT_KEY_PATTERN = /^[0-9a-f]{32}$/;

/** One entry of resolve.nix's `info` list. */
type AttrInfo =
  | { attr: string; status: 'ok'; drvPath: string; output: string; path: string }
  | { attr: string; status: 'missing' | 'evalError' }
  | { attr: string; status: 'notDerivation'; type: string };

/** A resolved package list, independent of the order it was requested in. */
interface CachedResolution {
  storePaths: Map<string, string>;
  closure: string[];
  builtNewPaths: boolean;
  rootKey: string;
}

/** What a finished Nix process left behind. */
interface NixRun {
  ok: boolean;
  timedOut: boolean;
  stdout: string;
  /** The last lines of stderr (build logs can be large, so only a tail is kept). */
  stderrTail: string;
}

/**
 * Resolves package lists in one package set, with an LRU cache keyed by the sorted list.
 * @example
 * const resolver = new PackageResolver({ packageSet: await choosePackageSet(process.env.FNIX_PACKAGES), gcRootsDir: '.fnix/gcroots' });
 * const { binPath, closure } = await resolver.resolve(['gojq', 'busybox']);
 */
export class PackageResolver {
  /** The set packages are looked up in. */
  readonly packageSet: PackageSet;
  /** Absolute directory holding the GC roots. */
  readonly gcRootsDir: string;
  readonly #buildTimeoutMs: number;
  readonly #evalTimeoutMs: number;
  readonly #substituters: Substituters;
  readonly #allowedUris: readonly string[];
  readonly #offlineView: OfflineView;
  readonly #cache: LRUCache<string, CachedResolution, { attrs: string[]; set: PackageSet }>;
  readonly #inFlight = new Set<string>();
  /** Whether Nix builds as build users, asked once, before the first build of a pushed set. */
  #buildUsers: Promise<void> | undefined;
  #stats: PackageResolverStats = { nixProcesses: 0, resolutions: 0, reused: 0 };

  constructor(options: PackageResolverOptions) {
    this.packageSet = options.packageSet;
    this.gcRootsDir = path.resolve(options.gcRootsDir);
    this.#buildTimeoutMs = options.buildTimeoutMs ?? 1_800_000;
    this.#evalTimeoutMs = options.evalTimeoutMs ?? 120_000;
    this.#substituters = options.substituters ?? new Substituters();
    this.#allowedUris = options.allowedUris ?? [];
    this.#offlineView = options.offlineView ?? new OfflineView();
    this.#cache = new LRUCache<string, CachedResolution, { attrs: string[]; set: PackageSet }>({
      max: options.cacheMax ?? 256,
      ignoreFetchAbort: true,
      fetchMethod: (key, _stale, { context }) => this.#resolveUncached(key, context.attrs, context.set),
    });
  }

  /** A snapshot of the counters. */
  get stats(): PackageResolverStats {
    return { ...this.#stats };
  }

  /**
   * The cache key of a package list: the same for any order or duplicates of the same attributes,
   * different for another package set. (Its GC roots are named by what it resolved to: {@link Resolution.rootKey}.)
   * @throws FnixError PACKAGE_NOT_FOUND when an entry is not a valid attribute path.
   */
  keyOf(attrs: readonly string[], packageSet: PackageSet = this.packageSet): string {
    const unique = validateAttributePaths(attrs, packageSet);
    return rootKeyOf(packageSet, unique);
  }

  /**
   * The package set of a pushed repository: its packages.nix, written alone into `dir` (a fresh folder of the
   * caller's, removed by the caller after the build), which this completes with `<fnix>` and resolve.nix
   * (runtime/nix/repository-set.ts). `fileId` names the file's content (its git blob id). Resolve in it with
   * `resolve(attrs, { packageSet })`.
   * @throws FnixError PACKAGE_SET_INVALID when the offline set, which the set sees as `<fnix>`, does not evaluate.
   */
  async repositorySet(dir: string, fileId: string): Promise<PackageSet> {
    const offline = await this.#offlineView.describe();
    return prepareRepositorySet({ dir, fileId, offline, allowedUris: this.#allowedUris });
  }

  /**
   * Resolves and, when needed, builds the packages; validates every name before running Nix.
   * Cached (failures are not); concurrent calls for the same list share one build.
   * @throws FnixError PACKAGE_NOT_FOUND for invalid attribute paths, attributes absent from the set, and
   *   attributes that are not derivations (all named at once, in `details.packages`).
   * @throws FnixError PACKAGE_BUILD_FAILED when a package fails to evaluate (broken, removed…) or to build,
   *   or the build times out; `details.log` has the end of Nix's output.
   * @throws FnixError PACKAGE_SET_INVALID when the package set itself does not evaluate, or PACKAGES_NIX_INVALID
   *   when it is a repository's.
   */
  async resolve(attrs: readonly string[], options: ResolveOptions = {}): Promise<Resolution> {
    const set = options.packageSet ?? this.packageSet;
    const unique = validateAttributePaths(attrs, set);
    const cacheKey = rootKeyOf(set, unique);
    if (unique.length === 0) return { packages: [], binPath: '', closure: [], builtNewPaths: false, rootKey: cacheKey };
    if (options.recorded) {
      const run = (command: string, args: string[], timeoutMs: number) => this.#runNix(command, args, timeoutMs);
      const reused = await reuseRecorded({ attrs: unique, recorded: options.recorded, gcRootsDir: this.gcRootsDir, run, timeoutMs: this.#evalTimeoutMs });
      if (reused) {
        this.#stats.reused += 1;
        const packages = unique.map((attr, i) => ({ attr, storePath: reused.storePaths[i]! }));
        const binPath = packages.map((p) => `${p.storePath}/bin`).join(':');
        return { packages, binPath, closure: reused.closure, builtNewPaths: false, rootKey: options.recorded.rootKey, reused: true };
      }
    }
    const wasCached = this.#hasLiveCacheEntry(cacheKey);
    const cached = await this.#cache.fetch(cacheKey, { context: { attrs: unique, set } });
    if (cached === undefined) throw new Error(`package resolution for ${unique.join(', ')} returned nothing`);
    const packages = unique.map((attr) => ({ attr, storePath: cached.storePaths.get(attr) ?? '' }));
    return {
      packages,
      binPath: packages.map((p) => `${p.storePath}/bin`).join(':'),
      closure: [...cached.closure],
      builtNewPaths: wasCached ? false : cached.builtNewPaths,
      rootKey: cached.rootKey,
    };
  }

  /**
   * Deletes the GC roots (and cache entries) of every package list whose root key is not in `keep`, so a later
   * nix-collect-garbage can free their paths. Lists being resolved right now are never pruned, and nothing
   * under gcRootsDir that is not named like a root key is touched.
   * @param keep root keys still in use: the {@link Resolution.rootKey} of each kept deployment's functions.
   * @returns the root keys removed.
   */
  async pruneRoots(keep: Iterable<string>): Promise<string[]> {
    const kept = new Set(keep);
    for (const [key, entry] of [...this.#cache.entries()]) {
      if (!kept.has(entry.rootKey) && !this.#inFlight.has(key)) this.#cache.delete(key);
    }
    const removed: string[] = [];
    for (const entry of await listDirectory(this.gcRootsDir)) {
      if (!ROOT_KEY_PATTERN.test(entry) || kept.has(entry) || this.#inFlight.has(entry)) continue;
      await rm(path.join(this.gcRootsDir, entry), { recursive: true, force: true });
      removed.push(entry);
    }
    return removed;
  }

  /** True when the cache holds a finished entry whose store paths still exist (drops it otherwise). */
  #hasLiveCacheEntry(rootKey: string): boolean {
    if (!this.#cache.has(rootKey)) return false;
    const entry = this.#cache.get(rootKey);
    if (entry && [...entry.storePaths.values()].every((p) => existsSync(p))) return true;
    this.#cache.delete(rootKey);
    return false;
  }

  /** The cache's fetchMethod: evaluates, builds, roots and measures one package list (in the first caller's order). */
  async #resolveUncached(cacheKey: string, attrs: string[], set: PackageSet): Promise<CachedResolution> {
    this.#inFlight.add(cacheKey);
    this.#stats.resolutions += 1;
    let rootKey: string | undefined;
    try {
      const infos = await this.#evaluateInfo(attrs, set);
      throwForUnknownPackages(infos, set);
      await this.#throwForEvalErrors(infos, set);
      const ok = infos.filter((i): i is Extract<AttrInfo, { status: 'ok' }> => i.status === 'ok');
      // The roots are named by what the list resolved to, not by the list: when the set changes (an updated
      // offline set, a nixpkgs channel), the same list resolves to new paths in a folder of its own, and the
      // roots of a deployment built on the old ones stay.
      rootKey = rootKeyOfOutputs(
        cacheKey,
        ok.map((i) => i.path),
      );
      this.#inFlight.add(rootKey);
      const builtNewPaths = ok.some((i) => !existsSync(i.path));
      await this.#build(rootKey, attrs, ok, set); // a no-op build when nothing is new, but it (re)registers the roots
      const storePaths = new Map(ok.map((i) => [i.attr, i.path]));
      const closure = await this.#queryClosure([...new Set(storePaths.values())]);
      return { storePaths, closure, builtNewPaths, rootKey };
    } finally {
      this.#inFlight.delete(cacheKey);
      if (rootKey) this.#inFlight.delete(rootKey);
    }
  }

  /**
   * Runs resolve.nix's `info` for the attributes. For a pushed set, in read-write mode, which writes the .drv
   * files as it goes: what is built is then exactly what this evaluation made (its builds do not evaluate again).
   */
  async #evaluateInfo(attrs: string[], set: PackageSet): Promise<AttrInfo[]> {
    const writeDrvs = set.untrusted ? ['--read-write-mode'] : [];
    const run = await this.#runNix(
      'nix-instantiate',
      ['--eval', '--strict', '--json', ...writeDrvs, ...this.#resolveNixArgs(attrs, set), '-A', 'info'],
      this.#evalTimeoutMs,
    );
    if (run.ok) return JSON.parse(run.stdout) as AttrInfo[];
    // Either the set itself is broken (checkPackageSet throws PACKAGE_SET_INVALID) or one attribute fails in
    // a way tryEval cannot catch (a type error, infinite recursion, a path restricted evaluation refuses…).
    this.#stats.nixProcesses += 1;
    await checkPackageSet(set, { timeoutMs: this.#evalTimeoutMs });
    const why = run.timedOut ? 'timed out' : nixErrorLine(set, run.stderrTail);
    throw new FnixError('PACKAGE_BUILD_FAILED', `evaluating ${quoteList(attrs)} in ${set.description} failed: ${why}`, {
      details: { packages: attrs, packageSet: set.description, log: nixLog(set, run.stderrTail) },
    });
  }

  /** Throws PACKAGE_BUILD_FAILED with Nix's own message when an attribute threw during evaluation. */
  async #throwForEvalErrors(infos: AttrInfo[], set: PackageSet): Promise<void> {
    const failed = infos.filter((i) => i.status === 'evalError').map((i) => i.attr);
    if (failed.length === 0) return;
    const run = await this.#runNix(
      'nix-instantiate',
      ['--eval', '--strict', '--json', ...this.#resolveNixArgs(failed, set), '-A', 'strict'],
      this.#evalTimeoutMs,
    );
    const why = run.ok ? 'it threw during evaluation' : nixErrorLine(set, run.stderrTail);
    throw new FnixError(
      'PACKAGE_BUILD_FAILED',
      `${plural(failed, 'package')} ${quoteList(failed)} cannot be evaluated in ${set.description} (broken, unfree, insecure or removed?): ${why}`,
      { details: { packages: failed, packageSet: set.description, log: nixLog(set, run.stderrTail) } },
    );
  }

  /**
   * Realises the chosen outputs in Nix's sandbox, registering `<gcRootsDir>/<rootKey>/result*` as indirect GC roots
   * (Nix 2.8 names them result, result-2, result-bin, result-2-bin… by position and output), then deletes links
   * there that no longer point at one of the outputs. nix-build evaluates the set again; a pushed set's outputs
   * are realised from the .drv files its `info` evaluation wrote, once sandbox.ts has checked the plan.
   */
  async #build(rootKey: string, attrs: string[], ok: Extract<AttrInfo, { status: 'ok' }>[], set: PackageSet): Promise<void> {
    const rootDir = path.join(this.gcRootsDir, rootKey);
    await mkdir(rootDir, { recursive: true });
    const substitution = await this.#substituters.nixBuildOptions(
      set,
      ok.some((i) => !existsSync(i.path)),
    );
    const rootLink = path.join(rootDir, 'result');
    let run: NixRun;
    try {
      run = set.untrusted
        ? await this.#realiseUntrusted(ok, rootLink, substitution, set)
        : await this.#runNix(
            'nix-build',
            [...substitution, ...SANDBOX_OPTIONS, '--keep-going', ...this.#resolveNixArgs(attrs, set), '-A', 'build', '--out-link', rootLink],
            this.#buildTimeoutMs,
          );
    } catch (error) {
      await rmdir(rootDir).catch(() => undefined);
      throw error;
    }
    if (!run.ok) {
      await rmdir(rootDir).catch(() => undefined); // only when empty: a failed first build leaves no roots
      throw explainRefusedSubstitutes(this.#buildError(ok, run, set), run.stderrTail);
    }
    await reconcileRoots(rootDir, new Set(ok.map((i) => i.path)));
  }

  /** Realises a pushed set's outputs as sandbox.ts checks them, once Nix is known to build as build users. */
  async #realiseUntrusted(ok: Extract<AttrInfo, { status: 'ok' }>[], rootLink: string, substitution: string[], set: PackageSet): Promise<NixRun> {
    this.#buildUsers ??= checkBuildUsers(this.#evalTimeoutMs).catch((error: unknown) => {
      this.#buildUsers = undefined; // asked again next time
      throw error;
    });
    await this.#buildUsers;
    return realiseChecked({
      targets: ok.map((i) => `${i.drvPath}!${i.output}`),
      rootLink,
      substitution,
      setDescription: set.description,
      run: (command, args, timeoutMs) => this.#runNix(command, args, timeoutMs),
      timeoutMs: this.#buildTimeoutMs,
    });
  }

  /** The PACKAGE_BUILD_FAILED error for a failed nix-build, naming the packages whose builders failed. */
  #buildError(ok: Extract<AttrInfo, { status: 'ok' }>[], run: NixRun, set: PackageSet): FnixError {
    const failedDrvs = new Set([...run.stderrTail.matchAll(/builder for '([^']+\.drv)' failed/g)].map((m) => m[1]));
    let failed = ok.filter((i) => failedDrvs.has(i.drvPath)).map((i) => i.attr);
    if (failed.length === 0) failed = ok.filter((i) => !existsSync(i.path)).map((i) => i.attr);
    if (failed.length === 0) failed = ok.map((i) => i.attr);
    const why = run.timedOut ? `timed out after ${this.#buildTimeoutMs} ms` : nixErrorLine(set, run.stderrTail);
    return new FnixError('PACKAGE_BUILD_FAILED', `building ${plural(failed, 'package')} ${quoteList(failed)} from ${set.description} failed: ${why}`, {
      details: { packages: failed, packageSet: set.description, log: nixLog(set, run.stderrTail) },
    });
  }

  /** `nix-store -qR` of the paths, sorted. */
  async #queryClosure(storePaths: string[]): Promise<string[]> {
    const run = await this.#runNix('nix-store', ['--query', '--requisites', ...storePaths], this.#evalTimeoutMs);
    if (!run.ok) {
      throw new FnixError('PACKAGE_BUILD_FAILED', `querying the closure of ${storePaths.join(' ')} failed: ${firstErrorLine(run.stderrTail)}`, {
        details: { log: run.stderrTail },
      });
    }
    return run.stdout
      .split('\n')
      .filter((line) => line !== '')
      .sort();
  }

  /** The file and arguments that select resolve.nix for this set and these attributes. */
  #resolveNixArgs(attrs: string[], set: PackageSet): string[] {
    return [...evaluationArgs(set), '--argstr', 'attrsJson', JSON.stringify(attrs)];
  }

  /** Runs a Nix command without a shell, keeping stdout and the tail of stderr. */
  async #runNix(command: string, args: string[], timeoutMs: number): Promise<NixRun> {
    this.#stats.nixProcesses += 1;
    const tail: string[] = [];
    const result = await execa(command, args, {
      reject: false,
      timeout: timeoutMs,
      stdin: 'ignore',
      stderr: keepTail(tail, 200),
    });
    if (result.exitCode === undefined && !result.timedOut) tail.push(`error: ${result.shortMessage}`);
    return {
      ok: result.exitCode === 0 && !result.timedOut,
      timedOut: result.timedOut,
      stdout: result.stdout,
      stderrTail: tailLines(tail.join('\n'), LOG_TAIL_LINES),
    };
  }
}

/**
 * Removes duplicates (keeping the first) and checks every entry against {@link ATTRIBUTE_PATH_PATTERN}.
 * @throws FnixError PACKAGE_NOT_FOUND naming every invalid entry.
 */
export function validateAttributePaths(attrs: readonly string[], packageSet: PackageSet): string[] {
  const invalid = attrs.filter((a) => typeof a !== 'string' || a.length > MAX_ATTRIBUTE_PATH_LENGTH || !ATTRIBUTE_PATH_PATTERN.test(a));
  if (invalid.length > 0) {
    const shown = invalid.map((a) => JSON.stringify(a)).join(', ');
    throw new FnixError(
      'PACKAGE_NOT_FOUND',
      `${shown} ${invalid.length === 1 ? 'is not a valid Nix attribute path' : 'are not valid Nix attribute paths'} ` +
        '(expected dot-separated names such as "gojq" or "python3Packages.requests")',
      { details: { packages: invalid, packageSet: packageSet.description } },
    );
  }
  return [...new Set(attrs)];
}

/** Throws PACKAGE_NOT_FOUND naming every attribute that is absent or not a derivation. */
function throwForUnknownPackages(infos: AttrInfo[], packageSet: PackageSet): void {
  const missing = infos.filter((i) => i.status === 'missing').map((i) => i.attr);
  const notDerivations = infos.filter((i) => i.status === 'notDerivation');
  if (missing.length === 0 && notDerivations.length === 0) return;
  const reasons: string[] = [];
  if (missing.length > 0) {
    reasons.push(`${plural(missing, 'package')} ${quoteList(missing)} ${missing.length === 1 ? 'is' : 'are'} not in ${packageSet.description}`);
  }
  for (const info of notDerivations) {
    const type = info.status === 'notDerivation' ? info.type : 'value';
    const hint = type === 'set' ? ` (a set of packages? name one inside it, e.g. '${info.attr}.<name>')` : '';
    reasons.push(`'${info.attr}' in ${packageSet.description} is a ${type}, not a package${hint}`);
  }
  throw new FnixError('PACKAGE_NOT_FOUND', reasons.join('; '), {
    details: {
      packages: [...missing, ...notDerivations.map((i) => i.attr)],
      packageSet: packageSet.description,
      missing,
      notDerivations: notDerivations.map((i) => i.attr),
    },
  });
}

/** Deletes links in `rootDir` that do not point at one of `wanted`; throws if a wanted path has no link. */
async function reconcileRoots(rootDir: string, wanted: Set<string>): Promise<void> {
  const rooted = new Set<string>();
  for (const entry of await listDirectory(rootDir)) {
    const link = path.join(rootDir, entry);
    const target = await readlink(link).catch(() => undefined);
    if (target !== undefined && wanted.has(target)) rooted.add(target);
    else await unlink(link).catch(() => undefined);
  }
  const unrooted = [...wanted].filter((p) => !rooted.has(p));
  if (unrooted.length > 0) {
    throw new FnixError('PACKAGE_BUILD_FAILED', `nix-build registered no GC root for ${unrooted.join(' ')} in ${rootDir}`, {
      details: { paths: unrooted },
    });
  }
}

/** The root key of a (validated, deduplicated) package list in a set (named by its identity, when it has one). */
function rootKeyOf(packageSet: PackageSet, attrs: readonly string[]): string {
  const canonical = JSON.stringify([packageSet.identity ?? packageSet.expression, [...new Set(attrs)].sort()]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 32);
}

/** The name of the GC roots of a list's resolution: its cache key and the store paths it resolved to. */
function rootKeyOfOutputs(cacheKey: string, outputs: readonly string[]): string {
  return createHash('sha256')
    .update(JSON.stringify([cacheKey, [...outputs].sort()]))
    .digest('hex')
    .slice(0, 32);
}

/** An execa line transform that keeps the last `max` lines in `tail` and passes nothing on. */
function keepTail(tail: string[], max: number): (line: unknown) => Generator<never, void, unknown> {
  // A generator that yields nothing: execa passes on only what a transform yields.
  // biome-ignore lint/correctness/useYield: it keeps lines, and passes none on
  return function* collect(line: unknown) {
    tail.push(String(line));
    if (tail.length > max) tail.splice(0, tail.length - max);
  };
}

/** Entries of a directory; none when it does not exist. */
async function listDirectory(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** `'a', 'b' and 'c'`. */
function quoteList(items: readonly string[]): string {
  const quoted = items.map((i) => `'${i}'`);
  return quoted.length <= 1 ? quoted.join('') : `${quoted.slice(0, -1).join(', ')} and ${quoted.at(-1)}`;
}

/** `package` or `packages`. */
function plural(items: readonly unknown[], word: string): string {
  return items.length === 1 ? word : `${word}s`;
}
