/**
 * @module
 * The sizes of a runtime closure's store paths ({@link Resolution.closure}): each path's NAR size, as
 * `nix-store --query --size` reports it, and their total. Sizes are cached per store path, since a path's
 * contents never change once it is valid, and many paths are asked for with one Nix process. Functions
 * whose closures overlap share those store paths, so a path is measured once however many closures hold it.
 */
import { execa } from 'execa';
import { LRUCache } from 'lru-cache';
import { FnixError } from '../errors.ts';
import { firstErrorLine, tailLines } from './package-set.ts';
import type { Resolution } from './resolve.ts';

/** One store path of a closure, with its size. */
export interface ClosurePath {
  path: string;
  /** Its NAR size: the bytes of its files, as Nix counts them (`nix-store --query --size`). */
  bytes: number;
}

/** A closure, measured. */
export interface MeasuredClosure {
  /** Each store path once, in the order given (a {@link Resolution.closure} is sorted). */
  paths: ClosurePath[];
  /** How many store paths. */
  count: number;
  /** The sum of their sizes. */
  totalBytes: number;
}

/** Options of {@link StorePathSizes}. */
export interface StorePathSizesOptions {
  /** Store paths whose sizes are kept. @default 100_000 */
  cacheMax?: number;
  /** Time limit of one `nix-store --query --size`. @default 60_000 */
  timeoutMs?: number;
  /** Most store paths asked for in one process, to stay far below the kernel's limit on arguments. @default 2000 */
  batchSize?: number;
}

/** Counters for tests. */
export interface StorePathSizesStats {
  /** `nix-store` processes spawned so far. */
  nixProcesses: number;
}

/** Lines of Nix's output kept for an error's details. */
const LOG_TAIL_LINES = 20;

/** The defaults of {@link StorePathSizesOptions}. */
const DEFAULTS: Required<StorePathSizesOptions> = { cacheMax: 100_000, timeoutMs: 60_000, batchSize: 2000 };

/**
 * Measures closures, caching each store path's size; concurrent calls share the queries for the paths
 * they have in common.
 * @example
 * const sizes = new StorePathSizes();
 * const { count, totalBytes } = await sizes.measure(version.resolution.closure);
 */
export class StorePathSizes {
  readonly #timeoutMs: number;
  readonly #batchSize: number;
  readonly #cache: LRUCache<string, number>;
  /** The query under way for each path being measured. */
  readonly #inFlight = new Map<string, Promise<Map<string, number>>>();
  #stats: StorePathSizesStats = { nixProcesses: 0 };

  constructor(options: StorePathSizesOptions = {}) {
    const { cacheMax, timeoutMs, batchSize } = { ...DEFAULTS, ...options };
    for (const [name, value] of Object.entries({ cacheMax, timeoutMs, batchSize })) {
      if (!Number.isInteger(value) || value < 1) throw new TypeError(`StorePathSizes option ${name} must be a positive integer, got ${String(value)}`);
    }
    this.#timeoutMs = timeoutMs;
    this.#batchSize = batchSize;
    this.#cache = new LRUCache({ max: cacheMax });
  }

  /** A snapshot of the counters. */
  get stats(): StorePathSizesStats {
    return { ...this.#stats };
  }

  /**
   * Each store path's size and their total; duplicates are counted once.
   * @throws FnixError RUNTIME_UNAVAILABLE when nix-store fails (a path that is not valid, or Nix not working).
   */
  async measure(storePaths: readonly string[]): Promise<MeasuredClosure> {
    return measuredFrom(storePaths, await this.sizesOf(storePaths));
  }

  /**
   * Measures several closures, and their union (each store path once, however many closures share it),
   * with one query for every path not yet known.
   * @throws FnixError RUNTIME_UNAVAILABLE when nix-store fails.
   */
  async measureAll(closures: readonly (readonly string[])[]): Promise<{ each: MeasuredClosure[]; union: MeasuredClosure }> {
    const all = [...new Set(closures.flat())].sort();
    const sizes = await this.sizesOf(all);
    return { each: closures.map((closure) => measuredFrom(closure, sizes)), union: measuredFrom(all, sizes) };
  }

  /**
   * The size of each of `storePaths`, in bytes: from the cache, from a query already under way, or
   * asked of nix-store, in as few processes as {@link StorePathSizesOptions.batchSize} allows.
   * @throws FnixError RUNTIME_UNAVAILABLE when nix-store fails.
   */
  async sizesOf(storePaths: readonly string[]): Promise<Map<string, number>> {
    const wanted = new Set(storePaths);
    const found = new Map<string, number>();
    const waits = new Set<Promise<Map<string, number>>>();
    const missing: string[] = [];
    for (const path of wanted) {
      const cached = this.#cache.get(path);
      const pending = this.#inFlight.get(path);
      if (cached !== undefined) found.set(path, cached);
      else if (pending) waits.add(pending);
      else missing.push(path);
    }
    for (let start = 0; start < missing.length; start += this.#batchSize) waits.add(this.#query(missing.slice(start, start + this.#batchSize)));
    // All at once, so that every query's failure is heard (by this caller) even when the first one fails.
    for (const sizes of await Promise.all(waits)) {
      for (const [path, bytes] of sizes) if (wanted.has(path)) found.set(path, bytes);
    }
    return found;
  }

  /** Asks nix-store for `paths`' sizes, caching them; the promise is shared by callers asking meanwhile. */
  #query(paths: string[]): Promise<Map<string, number>> {
    const query = this.#run(paths).finally(() => {
      for (const path of paths) if (this.#inFlight.get(path) === query) this.#inFlight.delete(path);
    });
    for (const path of paths) this.#inFlight.set(path, query);
    return query;
  }

  /** One `nix-store --query --size`, without a shell. */
  async #run(paths: string[]): Promise<Map<string, number>> {
    this.#stats.nixProcesses += 1;
    const result = await execa('nix-store', ['--query', '--size', ...paths], { reject: false, timeout: this.#timeoutMs, stdin: 'ignore' });
    if (result.exitCode !== 0 || result.timedOut) {
      const stderr = result.exitCode === undefined && !result.timedOut ? `error: ${result.shortMessage}` : result.stderr;
      const why = result.timedOut ? `timed out after ${this.#timeoutMs} ms` : firstErrorLine(stderr);
      // Nix stops at the first path it has no record of (one deleted from the store), and names it.
      const invalid = /path '([^']+)' is not valid/.exec(stderr)?.[1];
      throw new FnixError('RUNTIME_UNAVAILABLE', `nix-store could not measure the store paths of a closure: ${why}`, {
        details: { ...(invalid ? { path: invalid } : {}), log: tailLines(stderr, LOG_TAIL_LINES) },
      });
    }
    const sizes = parseSizes(result.stdout, paths);
    for (const [path, bytes] of sizes) this.#cache.set(path, bytes);
    return sizes;
  }
}

/** `storePaths` (each once, in their order) with their sizes from `sizes`, and the total. */
function measuredFrom(storePaths: readonly string[], sizes: ReadonlyMap<string, number>): MeasuredClosure {
  const paths = [...new Set(storePaths)].map((path) => ({ path, bytes: sizes.get(path)! }));
  return { paths, count: paths.length, totalBytes: paths.reduce((sum, p) => sum + p.bytes, 0) };
}

/**
 * Reads `nix-store --query --size <paths...>`'s output: one decimal number of bytes per line, one line
 * per argument, in the arguments' order (Nix 2.8 prints a repeated argument again).
 * @throws Error when the lines are not that: as many non-negative integers as `paths`.
 * @example
 * parseSizes('2034368\n3843352\n', ['/nix/store/…-busybox-static', '/nix/store/…-gojq']);
 * // Map { '/nix/store/…-busybox-static' => 2034368, '/nix/store/…-gojq' => 3843352 }
 */
export function parseSizes(stdout: string, paths: readonly string[]): Map<string, number> {
  const lines = stdout.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length !== paths.length) throw new Error(`nix-store --query --size printed ${lines.length} lines for ${paths.length} store paths`);
  const sizes = new Map<string, number>();
  lines.forEach((line, index) => {
    const bytes = /^\d{1,15}$/.test(line) ? Number(line) : Number.NaN;
    if (Number.isNaN(bytes)) throw new Error(`nix-store --query --size printed ${JSON.stringify(line.slice(0, 80))} for ${paths[index]}, not a size`);
    sizes.set(paths[index]!, bytes);
  });
  return sizes;
}

/** A size as people read it: `512 B`, `1.5 KiB`, `2.4 MiB`, `1.1 GiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** A measured closure in a few words: `1 path, 2.0 MiB` or `3 paths, 8.6 MiB`. */
export function describeClosure({ count, totalBytes }: Pick<MeasuredClosure, 'count' | 'totalBytes'>): string {
  return `${count} ${count === 1 ? 'path' : 'paths'}, ${formatBytes(totalBytes)}`;
}

/**
 * The sizes of the host's store, for whoever is not given a {@link StorePathSizes} of their own: the host
 * has one store, whose paths do not change, so one cache serves the admin API and the pushes alike.
 */
export const HOST_STORE_SIZES = new StorePathSizes();
