/**
 * @module
 * Starting containers, and keeping `size` generic ones warm. A start that fails in the background
 * pauses the refill for a backoff: 1 s, doubled on each failure up to 30 s, and back to none on the
 * next success.
 */
import type { Container } from '../container/container.ts';
import type { StoreGeneration } from './generation.ts';
import type { Inventory } from './inventory.ts';
import type { ContainerSource } from './options.ts';

/** The first pause after a failed background start. */
export const REFILL_BACKOFF_MIN_MS = 1000;
/** The longest pause after failed background starts. */
export const REFILL_BACKOFF_MAX_MS = 30_000;

/** A container being started. */
export interface Starting {
  promise: Promise<Container>;
  network: boolean;
  /** A request takes it once it is up (and removes this entry); otherwise it joins the warm ones. */
  claimed: boolean;
}

/** What {@link Refill} works with: the pool's containers and callbacks. */
export interface RefillOptions {
  source: ContainerSource;
  /** Generic containers to keep warm or starting. */
  size: number;
  maxContainers: number;
  /** Where it adds the containers it starts (starting, then warm). */
  inventory: Inventory;
  generation: StoreGeneration;
  isClosed: () => boolean;
  /** Reports a failed start. */
  onError: (error: unknown) => void;
  /** Called when a background start ended with a container (now warm, or removed as stale). */
  onStarted: () => void;
  /** Called when a started container exits, at any time. */
  onExit: (container: Container) => void;
  remove: (container: Container, reason: string) => void;
}

/** The next pause after a failed background start, given the current one (0 for none). */
export function nextBackoff(backoffMs: number): number {
  return Math.min(REFILL_BACKOFF_MAX_MS, Math.max(REFILL_BACKOFF_MIN_MS, backoffMs * 2));
}

/** Starts containers for the pool, and refills its generic ones. */
export class Refill {
  readonly #options: RefillOptions;
  #backoffMs = 0;
  #backoffTimer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;

  constructor(options: RefillOptions) {
    this.#options = options;
  }

  /** The last start failure, cleared by the next success. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Starts generic containers until `size` are warm or starting, within maxContainers. */
  fill(): void {
    const { size, maxContainers, inventory, isClosed } = this.#options;
    if (isClosed() || this.#backoffTimer) return;
    const unclaimed = () => [...inventory.starting].filter((s) => !s.claimed && !s.network).length;
    while (inventory.generic.length + unclaimed() < size && inventory.total < maxContainers) {
      this.launch(false, false);
    }
  }

  /**
   * Starts a container. A `claimed` one belongs to the request that started it, which takes it (or
   * reports its failure); an unclaimed one joins the warm ones unless a request claims it first.
   */
  launch(network: boolean, claimed: boolean): Starting {
    const { source, inventory, generation, isClosed, onStarted, onExit, remove } = this.#options;
    const starting: Starting = { network, claimed, promise: source.launch({ network, storeGeneration: generation.current }) };
    inventory.starting.add(starting);
    starting.promise.then(
      (container) => {
        void container.exited.then(() => onExit(container));
        this.#backoffMs = 0;
        this.#lastError = undefined;
        if (starting.claimed) return; // the claimer takes it (and removes the entry)
        inventory.starting.delete(starting);
        if (isClosed() || generation.isStale(container)) remove(container, 'stale');
        else inventory.generic.push(container);
        onStarted();
      },
      (error: unknown) => {
        if (starting.claimed) return; // the claimer reports it
        inventory.starting.delete(starting);
        this.recordFailure(error);
        this.#backoffMs = nextBackoff(this.#backoffMs);
        // Several starts of one refill may fail: the last failure's backoff is the one that holds.
        clearTimeout(this.#backoffTimer);
        this.#backoffTimer = setTimeout(() => {
          this.#backoffTimer = undefined;
          this.fill();
        }, this.#backoffMs);
      },
    );
    return starting;
  }

  /** Records a failed start, as `lastError` and through onError. */
  recordFailure(error: unknown): void {
    this.#lastError = (error as Error).message;
    this.#options.onError(error);
  }

  /** Cancels the pending retry, if any (the pool is closing). */
  stop(): void {
    clearTimeout(this.#backoffTimer);
  }
}
