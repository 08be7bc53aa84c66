/**
 * @module
 * Store generations. A build that adds store paths starts a new generation; each container is
 * stamped with the generation it started in, and a generic container of an older one may not see the
 * new paths (an overlay's lower folder changed under it), so the pool replaces it.
 */
import type { Container } from '../container/container.ts';

/** The pool's current store generation. */
export class StoreGeneration {
  #current = 0;

  /** The generation new containers start in. */
  get current(): number {
    return this.#current;
  }

  /** Starts a new generation: every container started before is stale from now on. */
  advance(): void {
    this.#current += 1;
  }

  /** Whether `container` started before the last store change. */
  isStale(container: Container): boolean {
    return container.storeGeneration !== this.#current;
  }
}
