/**
 * @module
 * The function versions served. Until a deployment says which they are, every version is; after
 * that, containers of any other version (a retired one) are not kept: idle ones go at once, busy
 * ones when they are released.
 */
import type { Container } from '../container/container.ts';
import type { IdleSet } from './idle-set.ts';

/** What {@link ServedVersions} removes containers from, and how. */
export interface ServedVersionsOptions {
  idle: IdleSet;
  remove: (container: Container, reason: string) => void;
}

/** The set of function versions served, by key, once a deployment said so. */
export class ServedVersions {
  readonly #idle: IdleSet;
  readonly #remove: (container: Container, reason: string) => void;
  #served: Set<string> | undefined;

  constructor(options: ServedVersionsOptions) {
    this.#idle = options.idle;
    this.#remove = options.remove;
  }

  /** Serves exactly `keys` from now on, and removes the idle containers of every other version. */
  serve(keys: Iterable<string>): void {
    const served = new Set(keys);
    this.#served = served;
    for (const container of this.#idle.takeAll()) {
      if (served.has(container.specializedFor!)) this.#idle.add(container);
      else this.#remove(container, `${container.specializedFor} retired`);
    }
  }

  /** Stops serving `key` (if a deployment said what is served), and removes its idle containers. */
  retire(key: string): void {
    this.#served?.delete(key);
    for (const container of this.#idle.takeAll(key)) this.#remove(container, `${key} retired`);
  }

  /** Whether `container` is specialised for a version that is no longer served. */
  isRetired(container: Container): boolean {
    return container.specializedFor !== undefined && this.#served !== undefined && !this.#served.has(container.specializedFor);
  }
}
