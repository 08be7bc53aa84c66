/**
 * @module
 * Turns a manifest's `packages` (Nix attribute paths such as `gojq` or `python3Packages.requests`) into store
 * paths: evaluates them in the chosen {@link PackageSet} through runtime/nix/resolve.nix, builds what is missing
 * with nix-build, registers GC roots so nix-collect-garbage keeps them, and reports the PATH and the runtime
 * closure a container needs. Results are cached per package list; concurrent requests share one build.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readlink, rm, rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { LRUCache } from 'lru-cache';
import { FnixError } from '../errors.ts';
import { checkPackageSet, firstErrorLine, RESOLVE_NIX_FILE, tailLines, type PackageSet } from './package-set.ts';

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
   * Pass `--option substituters ''` to nix-build, so it does not spend seconds retrying an unreachable
   * binary cache. Set false where a binary cache is reachable. @default true
   */
  offline?: boolean;
}

/** Counters for logs and tests. */
export interface PackageResolverStats {
  /** Nix processes spawned so far (evaluations, builds, closure queries). */
  nixProcesses: number;
  /** Package lists actually resolved with Nix (cache misses that ran), successful or not. */
  resolutions: number;
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
  readonly #offline: boolean;
  readonly #cache: LRUCache<string, CachedResolution, string[]>;
  readonly #inFlight = new Set<string>();
  #stats: PackageResolverStats = { nixProcesses: 0, resolutions: 0 };

  constructor(options: PackageResolverOptions) {
    this.packageSet = options.packageSet;
    this.gcRootsDir = path.resolve(options.gcRootsDir);
    this.#buildTimeoutMs = options.buildTimeoutMs ?? 1_800_000;
    this.#evalTimeoutMs = options.evalTimeoutMs ?? 120_000;
    this.#offline = options.offline ?? true;
    this.#cache = new LRUCache<string, CachedResolution, string[]>({
      max: options.cacheMax ?? 256,
      ignoreFetchAbort: true,
      fetchMethod: (key, _stale, { context }) => this.#resolveUncached(key, context),
    });
  }

  /** A snapshot of the counters. */
  get stats(): PackageResolverStats {
    return { ...this.#stats };
  }

  /**
   * The root key of a package list: the same for any order or duplicates of the same attributes,
   * different for another package set.
   * @throws FnixError PACKAGE_NOT_FOUND when an entry is not a valid attribute path.
   */
  keyOf(attrs: readonly string[]): string {
    const unique = validateAttributePaths(attrs, this.packageSet);
    return rootKeyOf(this.packageSet, unique);
  }

  /**
   * Resolves and, when needed, builds the packages; validates every name before running Nix.
   * Cached (failures are not); concurrent calls for the same list share one build.
   * @throws FnixError PACKAGE_NOT_FOUND for invalid attribute paths, attributes absent from the set, and
   *   attributes that are not derivations (all named at once, in `details.packages`).
   * @throws FnixError PACKAGE_BUILD_FAILED when a package fails to evaluate (broken, removed…) or to build,
   *   or the build times out; `details.log` has the end of Nix's output.
   * @throws FnixError PACKAGE_SET_INVALID when the package set itself does not evaluate.
   */
  async resolve(attrs: readonly string[]): Promise<Resolution> {
    const unique = validateAttributePaths(attrs, this.packageSet);
    const rootKey = rootKeyOf(this.packageSet, unique);
    if (unique.length === 0) return { packages: [], binPath: '', closure: [], builtNewPaths: false, rootKey };
    const wasCached = this.#hasLiveCacheEntry(rootKey);
    const cached = await this.#cache.fetch(rootKey, { context: unique });
    if (cached === undefined) throw new Error(`package resolution for ${unique.join(', ')} returned nothing`);
    const packages = unique.map((attr) => ({ attr, storePath: cached.storePaths.get(attr) ?? '' }));
    return {
      packages,
      binPath: packages.map((p) => `${p.storePath}/bin`).join(':'),
      closure: [...cached.closure],
      builtNewPaths: wasCached ? false : cached.builtNewPaths,
      rootKey,
    };
  }

  /**
   * Deletes the GC roots (and cache entries) of every package list whose root key is not in `keep`, so a later
   * nix-collect-garbage can free their paths. Lists being resolved right now are never pruned, and nothing
   * under gcRootsDir that is not named like a root key is touched.
   * @param keep root keys still in use: {@link Resolution.rootKey} or {@link PackageResolver.keyOf} of each
   *   deployed function's package list.
   * @returns the root keys removed.
   */
  async pruneRoots(keep: Iterable<string>): Promise<string[]> {
    const kept = new Set(keep);
    for (const key of [...this.#cache.keys()]) {
      if (!kept.has(key) && !this.#inFlight.has(key)) this.#cache.delete(key);
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
  async #resolveUncached(rootKey: string, attrs: string[]): Promise<CachedResolution> {
    this.#inFlight.add(rootKey);
    this.#stats.resolutions += 1;
    try {
      const infos = await this.#evaluateInfo(attrs);
      throwForUnknownPackages(infos, this.packageSet);
      await this.#throwForEvalErrors(infos);
      const ok = infos.filter((i): i is Extract<AttrInfo, { status: 'ok' }> => i.status === 'ok');
      const builtNewPaths = ok.some((i) => !existsSync(i.path));
      await this.#build(rootKey, attrs, ok); // a no-op build when nothing is new, but it (re)registers the roots
      const storePaths = new Map(ok.map((i) => [i.attr, i.path]));
      const closure = await this.#queryClosure([...new Set(storePaths.values())]);
      return { storePaths, closure, builtNewPaths, rootKey };
    } finally {
      this.#inFlight.delete(rootKey);
    }
  }

  /** Runs resolve.nix's `info` for the attributes. */
  async #evaluateInfo(attrs: string[]): Promise<AttrInfo[]> {
    const run = await this.#runNix('nix-instantiate', ['--eval', '--strict', '--json', ...this.#resolveNixArgs(attrs), '-A', 'info'], this.#evalTimeoutMs);
    if (run.ok) return JSON.parse(run.stdout) as AttrInfo[];
    // Either the set itself is broken (checkPackageSet throws PACKAGE_SET_INVALID) or one attribute fails in
    // a way tryEval cannot catch (a type error, infinite recursion…).
    this.#stats.nixProcesses += 1;
    await checkPackageSet(this.packageSet, { timeoutMs: this.#evalTimeoutMs });
    const why = run.timedOut ? 'timed out' : firstErrorLine(run.stderrTail);
    throw new FnixError('PACKAGE_BUILD_FAILED', `evaluating ${quoteList(attrs)} in ${this.packageSet.description} failed: ${why}`, {
      details: { packages: attrs, packageSet: this.packageSet.description, log: run.stderrTail },
    });
  }

  /** Throws PACKAGE_BUILD_FAILED with Nix's own message when an attribute threw during evaluation. */
  async #throwForEvalErrors(infos: AttrInfo[]): Promise<void> {
    const failed = infos.filter((i) => i.status === 'evalError').map((i) => i.attr);
    if (failed.length === 0) return;
    const run = await this.#runNix('nix-instantiate', ['--eval', '--strict', '--json', ...this.#resolveNixArgs(failed), '-A', 'strict'], this.#evalTimeoutMs);
    const why = run.ok ? 'it threw during evaluation' : firstErrorLine(run.stderrTail);
    throw new FnixError(
      'PACKAGE_BUILD_FAILED',
      `${plural(failed, 'package')} ${quoteList(failed)} cannot be evaluated in ${this.packageSet.description} ` +
        `(broken, unfree, insecure or removed?): ${why}`,
      { details: { packages: failed, packageSet: this.packageSet.description, log: run.stderrTail } },
    );
  }

  /**
   * Realises the chosen outputs with nix-build, which registers `<gcRootsDir>/<rootKey>/result*` as indirect
   * GC roots (Nix 2.8 names them result, result-2, result-bin, result-2-bin… by position and output), then
   * deletes links there that no longer point at one of the outputs.
   */
  async #build(rootKey: string, attrs: string[], ok: Extract<AttrInfo, { status: 'ok' }>[]): Promise<void> {
    const rootDir = path.join(this.gcRootsDir, rootKey);
    await mkdir(rootDir, { recursive: true });
    const offline = this.#offline ? ['--option', 'substituters', ''] : [];
    const run = await this.#runNix(
      'nix-build',
      [...offline, '--keep-going', ...this.#resolveNixArgs(attrs), '-A', 'build', '--out-link', path.join(rootDir, 'result')],
      this.#buildTimeoutMs,
    );
    if (!run.ok) {
      await rmdir(rootDir).catch(() => undefined); // only when empty: a failed first build leaves no roots
      throw this.#buildError(ok, run);
    }
    await reconcileRoots(rootDir, new Set(ok.map((i) => i.path)));
  }

  /** The PACKAGE_BUILD_FAILED error for a failed nix-build, naming the packages whose builders failed. */
  #buildError(ok: Extract<AttrInfo, { status: 'ok' }>[], run: NixRun): FnixError {
    const failedDrvs = new Set([...run.stderrTail.matchAll(/builder for '([^']+\.drv)' failed/g)].map((m) => m[1]));
    let failed = ok.filter((i) => failedDrvs.has(i.drvPath)).map((i) => i.attr);
    if (failed.length === 0) failed = ok.filter((i) => !existsSync(i.path)).map((i) => i.attr);
    if (failed.length === 0) failed = ok.map((i) => i.attr);
    const why = run.timedOut ? `timed out after ${this.#buildTimeoutMs} ms` : firstErrorLine(run.stderrTail);
    return new FnixError(
      'PACKAGE_BUILD_FAILED',
      `building ${plural(failed, 'package')} ${quoteList(failed)} from ${this.packageSet.description} failed: ${why}`,
      { details: { packages: failed, packageSet: this.packageSet.description, log: run.stderrTail } },
    );
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
  #resolveNixArgs(attrs: string[]): string[] {
    return [RESOLVE_NIX_FILE, '--arg', 'pkgs', this.packageSet.expression, '--argstr', 'attrsJson', JSON.stringify(attrs)];
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

/** The root key of a (validated, deduplicated) package list in a set. */
function rootKeyOf(packageSet: PackageSet, attrs: readonly string[]): string {
  const canonical = JSON.stringify([packageSet.expression, [...new Set(attrs)].sort()]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 32);
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
