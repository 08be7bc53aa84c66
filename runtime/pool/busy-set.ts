/**
 * @module
 * The containers lent to invocations, with a promise for the moment the last one comes back: the
 * pool's shutdown waits on it rather than polling.
 */
import type { Container } from '../container/container.ts';

/** Busy containers. */
export class BusySet {
  readonly #containers = new Set<Container>();
  /** Called once the set is empty, by {@link BusySet.whenEmpty}'s waits. */
  readonly #onEmpty = new Set<() => void>();

  get size(): number {
    return this.#containers.size;
  }

  has(container: Container): boolean {
    return this.#containers.has(container);
  }

  add(container: Container): void {
    this.#containers.add(container);
  }

  /** Takes `container` out of the set; false when it was not in it. */
  delete(container: Container): boolean {
    const deleted = this.#containers.delete(container);
    if (deleted && this.#containers.size === 0) for (const notify of [...this.#onEmpty]) notify();
    return deleted;
  }

  /** Forgets every container, without waking {@link BusySet.whenEmpty}'s waits. */
  clear(): void {
    this.#containers.clear();
  }

  [Symbol.iterator](): IterableIterator<Container> {
    return this.#containers.values();
  }

  /** Resolves once the set is empty (at once if it is, or if `timeoutMs` is not positive), or after `timeoutMs`. */
  whenEmpty(timeoutMs: number): Promise<void> {
    if (this.#containers.size === 0 || timeoutMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#onEmpty.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#onEmpty.add(done);
    });
  }
}
