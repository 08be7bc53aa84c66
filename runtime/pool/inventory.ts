/**
 * @module
 * Where each of the pool's containers is: warm (generic), starting, idle (specialised), busy, or held
 * by a serve function's instance, and how many there are in all, which maxContainers bounds.
 */
import type { Container } from '../container/container.ts';
import { BusySet } from './busy-set.ts';
import type { IdleSet } from './idle-set.ts';
import type { Starting } from './refill.ts';

/** The pool's containers, by state. */
export class Inventory {
  /** Ready generic containers: no network, no function yet. */
  readonly generic: Container[] = [];
  /** Containers being started. */
  readonly starting = new Set<Starting>();
  /** Idle containers, each specialised for a function version. */
  readonly idle: IdleSet;
  /** Containers lent to invocations (or handed from one to the next). */
  readonly busy = new BusySet();
  /** Containers a serve function's instance holds for its whole life (runtime/serve/instance.ts). */
  readonly held = new Set<Container>();

  constructor(idle: IdleSet) {
    this.idle = idle;
  }

  /** Every container, counted against maxContainers. */
  get total(): number {
    return this.generic.length + this.starting.size + this.idle.size + this.busy.size + this.held.size;
  }

  /** Takes a container that exited out of the warm or idle ones; false when it was in neither. */
  forget(container: Container): boolean {
    const index = this.generic.indexOf(container);
    if (index !== -1) this.generic.splice(index, 1);
    return index !== -1 || this.idle.delete(container);
  }
}
