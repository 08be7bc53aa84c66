/**
 * @module
 * Which version of each function is served now. Activation swaps one map entry, so a request sees
 * either the old version or the new one, never a mix. Functions that failed to build are kept with
 * their error, so requests and /healthz can say why they are not served.
 */
import { FnixError } from '../errors.ts';
import { isFunctionName } from './name.ts';
import type { FunctionVersion } from './version.ts';

/** A function's state as reported by {@link FunctionRegistry.list}. */
export type FunctionStatus =
  | { name: string; status: 'ready'; version: string; packages: string[]; serve: boolean }
  | { name: string; status: 'broken'; error: { code: string; message: string } };

type Entry = { status: 'ready'; version: FunctionVersion } | { status: 'broken'; error: FnixError };

/** The served functions, by name. */
export class FunctionRegistry {
  #entries = new Map<string, Entry>();

  /** The version to run for `name`. Throws FUNCTION_NOT_FOUND or FUNCTION_UNAVAILABLE. */
  get(name: string): FunctionVersion {
    const entry = isFunctionName(name) ? this.#entries.get(name) : undefined;
    if (!entry) {
      throw new FnixError('FUNCTION_NOT_FOUND', `no function named ${JSON.stringify(name.slice(0, 80))} is deployed`, {
        details: { function: name.slice(0, 80) },
      });
    }
    if (entry.status === 'broken') {
      throw new FnixError('FUNCTION_UNAVAILABLE', `function '${name}' is not served because it did not pass its checks: ${entry.error.message}`, {
        details: { function: name, cause: entry.error.toJSON() },
      });
    }
    return entry.version;
  }

  /** Serves `version` from now on; returns the version it replaced, if any. */
  activate(version: FunctionVersion): FunctionVersion | undefined {
    const previous = this.#entries.get(version.name);
    this.#entries.set(version.name, { status: 'ready', version });
    return previous?.status === 'ready' ? previous.version : undefined;
  }

  /**
   * Serves exactly `versions` from now on (a deployment): one swap of the whole map, so a request sees
   * the old set or the new one, never a mix. Functions absent from `versions` are no longer served.
   * Returns the versions that stopped being served.
   */
  replaceAll(versions: readonly FunctionVersion[], broken: ReadonlyMap<string, FnixError> = new Map()): FunctionVersion[] {
    const next = new Map<string, Entry>();
    for (const [name, error] of broken) next.set(name, { status: 'broken', error });
    for (const version of versions) next.set(version.name, { status: 'ready', version });
    const kept = new Set(versions.map((v) => v.key));
    const dropped = this.versions().filter((v) => !kept.has(v.key));
    this.#entries = next;
    return dropped;
  }

  /** Records that `name` could not be built. A served version stays served. */
  markBroken(name: string, error: FnixError): void {
    if (this.#entries.get(name)?.status !== 'ready') this.#entries.set(name, { status: 'broken', error });
  }

  /** Every function, sorted by name. */
  list(): FunctionStatus[] {
    return [...this.#entries.entries()]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([name, entry]) =>
        entry.status === 'ready'
          ? {
              name,
              status: 'ready',
              version: entry.version.version,
              packages: entry.version.manifest.packages,
              serve: entry.version.manifest.serve !== undefined,
            }
          : { name, status: 'broken', error: { code: entry.error.code, message: entry.error.message } },
      );
  }

  /** Versions being served (for GC roots to keep). */
  versions(): FunctionVersion[] {
    return [...this.#entries.values()].flatMap((e) => (e.status === 'ready' ? [e.version] : []));
  }
}
