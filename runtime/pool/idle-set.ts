/**
 * @module
 * Idle specialised containers, indexed by the function version they serve. Built on lru-cache: `max`
 * bounds them, `ttl` retires those idle too long, and the least recently used go first when the pool
 * needs room.
 */
import { LRUCache } from 'lru-cache';
import type { Container } from '../container/container.ts';

/** Options for {@link IdleSet}. */
export interface IdleSetOptions {
  /** Most idle containers kept. */
  max: number;
  /** How long a container may stay idle. */
  ttlMs: number;
  /** Called with each container the set drops by itself (expired or evicted); it must remove it. */
  onDrop: (container: Container, reason: 'expired' | 'evicted') => void;
}

/** Idle containers, each specialised for one function version. */
export class IdleSet {
  readonly #cache: LRUCache<string, Container>;
  readonly #byKey = new Map<string, Set<string>>();

  constructor(options: IdleSetOptions) {
    this.#cache = new LRUCache<string, Container>({
      max: options.max,
      ttl: options.ttlMs,
      ttlAutopurge: true,
      updateAgeOnGet: false,
      dispose: (container, name, reason) => {
        this.#unindex(container, name);
        if (reason === 'expire') options.onDrop(container, 'expired');
        else if (reason === 'evict') options.onDrop(container, 'evicted');
      },
    });
  }

  get size(): number {
    return this.#cache.size;
  }

  /** Adds a container that has finished an invocation and can serve its function again. */
  add(container: Container): void {
    const key = container.specializedFor;
    if (key === undefined) throw new Error(`container ${container.name} is not specialised`);
    const names = this.#byKey.get(key) ?? new Set<string>();
    this.#byKey.set(key, names);
    names.add(container.name);
    this.#cache.set(container.name, container);
  }

  /** Takes an idle container serving `key`, the most recently used one. */
  take(key: string): Container | undefined {
    const names = this.#byKey.get(key);
    if (!names) return undefined;
    let newest: Container | undefined;
    for (const name of names) {
      const container = this.#cache.peek(name);
      if (container && (!newest || container.lastUsedAt > newest.lastUsedAt)) newest = container;
    }
    if (newest) this.#cache.delete(newest.name);
    return newest;
  }

  /** Takes `container` out of the set; false when it was not in it. */
  delete(container: Container): boolean {
    return this.#cache.delete(container.name);
  }

  /** Drops the least recently used container (through onDrop). Returns false when empty. */
  evictOldest(): boolean {
    return this.#cache.pop() !== undefined;
  }

  /** Takes every idle container of `key` (a version being retired). */
  takeAll(key?: string): Container[] {
    const taken = [...this.#cache.values()].filter((c) => key === undefined || c.specializedFor === key);
    for (const container of taken) this.#cache.delete(container.name);
    return taken;
  }

  #unindex(container: Container, name: string): void {
    const key = container.specializedFor;
    if (key === undefined) return;
    const names = this.#byKey.get(key);
    names?.delete(name);
    if (names?.size === 0) this.#byKey.delete(key);
  }
}
