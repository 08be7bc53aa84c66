/**
 * @module
 * Placing a request: which container it gets, decided synchronously and reserved at once. Best is
 * an idle container already serving its function version, then one of its version about to be
 * released (a hand-off), then a warm generic one (not for network functions), then one being started,
 * and last a new start, making room under maxContainers by evicting an idle or a generic container.
 */
import type { Container } from '../container/container.ts';
import type { FunctionVersion } from '../functions/version.ts';
import type { Handoff, Handoffs } from './handoff.ts';
import type { Inventory } from './inventory.ts';
import type { Starting } from './refill.ts';

/** How a request gets its container. */
export type Plan =
  | { kind: 'idle'; container: Container }
  | { kind: 'handoff'; handoff: Handoff }
  | { kind: 'generic'; container: Container }
  | { kind: 'start'; starting: Starting; claimedFromRefill: boolean };

/** What {@link Planner} chooses from: the pool's containers and callbacks. */
export interface PlannerOptions {
  maxContainers: number;
  inventory: Inventory;
  handoffs: Handoffs;
  /** Starts a container (see Refill.launch). */
  launch: (network: boolean, claimed: boolean) => Starting;
  remove: (container: Container, reason: string) => void;
}

/** Decides how each request gets a container. */
export class Planner {
  readonly #options: PlannerOptions;

  constructor(options: PlannerOptions) {
    this.#options = options;
  }

  /** Decides synchronously how `fn` gets a container, reserving it; undefined means wait. */
  plan(fn: FunctionVersion): Plan | undefined {
    const { maxContainers, inventory, handoffs, launch } = this.#options;
    const container = inventory.idle.take(fn.key);
    if (container) return { kind: 'idle', container };
    const handoff = handoffs.claim(fn.key);
    if (handoff) return { kind: 'handoff', handoff };
    const network = fn.manifest.network;
    if (!network) {
      const warm = inventory.generic.pop();
      if (warm) return { kind: 'generic', container: warm };
    }
    for (const starting of inventory.starting) {
      if (!starting.claimed && starting.network === network) {
        starting.claimed = true;
        return { kind: 'start', starting, claimedFromRefill: true };
      }
    }
    if (inventory.total >= maxContainers && !this.#makeRoom()) return undefined;
    return { kind: 'start', starting: launch(network, true), claimedFromRefill: false };
  }

  /** Removes one idle container (the least recently used) or, failing that, one generic container. */
  #makeRoom(): boolean {
    const { inventory, remove } = this.#options;
    if (inventory.idle.evictOldest()) return true;
    const container = inventory.generic.shift();
    if (container) remove(container, 'room for another function');
    return container !== undefined;
  }
}
