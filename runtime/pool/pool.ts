/**
 * @module
 * The warm pool. It keeps `size` generic containers (no network, no function yet) ready in the
 * background, hands a request one of them (specialising it) or, better, an idle container that already
 * serves the same function version, starts one when none is warm (a cold start), and queues requests
 * only when `maxContainers` are all busy or starting.
 *
 * Containers are reused for the same function version only, never across functions; between
 * invocations the agent kills every process and empties /tmp and /dev/shm. This file only wires
 * the parts together; each of the folder's other files does one of them.
 */
import type { Container } from '../container/container.ts';
import type { FunctionVersion } from '../functions/version.ts';
import { StoreGeneration } from './generation.ts';
import { awaitHandoff, Handoffs } from './handoff.ts';
import { IdleSet } from './idle-set.ts';
import { Inventory } from './inventory.ts';
import { type Lease, type LeaseContext, takeLease } from './lease.ts';
import { normalizePoolOptions, type ContainerSource, type PoolOptions } from './options.ts';
import { type Plan, Planner } from './plan.ts';
import { WaitQueue } from './queue.ts';
import { Refill } from './refill.ts';
import { ServedVersions } from './served.ts';
import { shutDown, shuttingDown } from './shutdown.ts';

export type { ContainerSource, Lease, PoolOptions };

/** Counts for /healthz and metrics. */
export interface PoolStats {
  /** Ready generic containers. */
  warm: number;
  /** Idle containers specialised for a function. */
  idle: number;
  busy: number;
  /** Containers held by serve functions' instances, one each, for the instance's life. */
  serving: number;
  starting: number;
  queued: number;
  total: number;
  max: number;
  size: number;
  /** The last refill failure, cleared by the next success. */
  lastError: string | undefined;
}

/**
 * A bounded pool of containers.
 * @example
 * const pool = new Pool({ source: launcher, size: 2, maxContainers: 8 });
 * await pool.start();
 * const lease = await pool.acquire(fn, { signal });
 * pool.release(lease.container, reusable);
 */
export class Pool {
  readonly size: number;
  readonly maxContainers: number;
  readonly #source: ContainerSource;
  readonly #containers: Inventory;
  readonly #handoffs = new Handoffs();
  readonly #generation = new StoreGeneration();
  readonly #served: ServedVersions;
  readonly #queue: WaitQueue<Plan>;
  readonly #refill: Refill;
  readonly #planner: Planner;
  readonly #leaseContext: LeaseContext;
  #closed = false;
  readonly #remove = (container: Container, reason: string): void => this.#source.remove(container, reason);

  constructor(options: PoolOptions) {
    const { source, size, maxContainers, idleTtlMs, queueTimeoutMs, maxQueue, onError } = normalizePoolOptions(options);
    this.size = size;
    this.maxContainers = maxContainers;
    this.#source = source;
    const idle = new IdleSet({
      max: maxContainers,
      ttlMs: idleTtlMs,
      onDrop: (container, reason) => {
        this.#remove(container, `idle container ${reason}`);
        if (reason === 'expired') queueMicrotask(() => this.#pump());
      },
    });
    const inventory = new Inventory(idle);
    this.#containers = inventory;
    // The parts call back into the pool: `pump` when capacity came free, `remove` to let a container go.
    const [remove, isClosed, pump] = [this.#remove, () => this.#closed, () => this.#pump()];
    const onExit = (container: Container) => this.#forget(container);
    this.#served = new ServedVersions({ idle, remove });
    const capacity = { what: `all ${maxContainers} containers`, unit: 'container', details: { maxContainers } };
    this.#queue = new WaitQueue({ timeoutMs: queueTimeoutMs, maxQueue, capacity: () => capacity });
    const generation = this.#generation;
    this.#refill = new Refill({ source, size, maxContainers, inventory, generation, isClosed, onError, onStarted: pump, onExit, remove });
    const launch = (network: boolean, claimed: boolean) => this.#refill.launch(network, claimed);
    this.#planner = new Planner({ maxContainers, inventory, handoffs: this.#handoffs, launch, remove });
    const recordStartFailure = (error: unknown) => this.#refill.recordFailure(error);
    this.#leaseContext = { inventory, isClosed, recordStartFailure, pump, refill: () => this.#refill.fill(), remove };
  }

  /** Fills the pool; rejects with the cause when not one of its containers could be started. */
  async start(): Promise<void> {
    this.#refill.fill();
    const results = await Promise.allSettled([...this.#containers.starting].map((s) => s.promise));
    const failures = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failures.length > 0 && failures.length === results.length) throw failures[0]!.reason;
  }

  /**
   * A container serving `fn`, specialised and idle. Waits (up to queueTimeoutMs) when the pool is at
   * maxContainers with every container busy. Throws NO_CAPACITY, SHUTTING_DOWN, INVOCATION_ABORTED or
   * CONTAINER_START_FAILED.
   */
  async acquire(fn: FunctionVersion, options: { signal?: AbortSignal | undefined } = {}): Promise<Lease> {
    const begin = performance.now();
    let plan = this.#plan(fn) ?? (await this.#queue.wait(fn, options.signal));
    while (plan.kind === 'handoff') {
      // A container handed over is as good as an idle one: specialised for fn, and warm.
      const container = await awaitHandoff(plan.handoff);
      plan = container ? { kind: 'idle', container } : (this.#plan(fn) ?? (await this.#queue.wait(fn, options.signal)));
    }
    return takeLease({ fn, plan, begin, context: this.#leaseContext });
  }

  /**
   * Says that `container`'s invocation has ended and the container will be released shortly. A request
   * for the same function arriving in between then waits for it, instead of taking another container.
   */
  finishing(container: Container): void {
    if (this.#containers.busy.has(container)) this.#handoffs.expect(container);
  }

  /**
   * Says that a leased container is held by a serve function's instance for its whole life: it is
   * counted as `serving`, not busy, and goes when released (never reused).
   */
  hold(container: Container): void {
    if (this.#containers.busy.delete(container)) this.#containers.held.add(container);
  }

  /** Gives a container back after its invocation; `reusable` is false when it must be retired. */
  release(container: Container, reusable: boolean): void {
    if (this.#containers.held.delete(container)) {
      this.#remove(container, 'its serve instance ended');
      this.#pump();
      return;
    }
    // Handed to the request that waited for it, it stays busy.
    if (this.#handoffs.release(container, () => reusable && !this.#closed && container.isAlive)) return;
    if (!this.#containers.busy.delete(container)) return;
    const retired = this.#served.isRetired(container);
    if (reusable && !retired && !this.#closed && container.isAlive) this.#containers.idle.add(container);
    else this.#remove(container, !reusable ? 'not reusable' : retired ? `${container.specializedFor} retired` : !container.isAlive ? 'exited' : 'pool closed');
    this.#pump();
  }

  /**
   * Called after a build added store paths. Generic containers started before may not see them (an
   * overlay's lower folder changed under it), so they are replaced.
   */
  markStoreChanged(): void {
    this.#generation.advance();
    for (const container of this.#containers.generic.splice(0)) this.#remove(container, 'store changed');
    this.#refill.fill();
  }

  /** Removes the idle containers of a function version that is no longer served. */
  retire(key: string): void {
    this.#served.retire(key);
    this.#pump();
  }

  /**
   * Says which function versions are served from now on (a deployment was activated): idle containers
   * of any other version go now, and the others (busy, or still being specialised for a request that
   * took the old version just before the switch) when they are released.
   */
  serve(keys: Iterable<string>): void {
    this.#served.serve(keys);
    this.#pump();
  }

  /** The pool's counts, now. */
  stats(): PoolStats {
    const { generic, idle, busy, held, starting, total } = this.#containers;
    return {
      warm: generic.length,
      idle: idle.size,
      busy: busy.size,
      serving: held.size,
      starting: starting.size,
      queued: this.#queue.length,
      total,
      max: this.maxContainers,
      size: this.size,
      lastError: this.#refill.lastError,
    };
  }

  /** Refuses new work, removes idle containers, waits for busy ones up to `graceMs`, then removes all. */
  async close(graceMs = 10_000): Promise<void> {
    this.#closed = true;
    await shutDown({ inventory: this.#containers, queue: this.#queue, refill: this.#refill, source: this.#source, graceMs, remove: this.#remove });
  }

  /** Decides synchronously how `fn` gets a container, reserving it; undefined means wait. */
  #plan(fn: FunctionVersion): Plan | undefined {
    if (this.#closed) throw shuttingDown();
    return this.#planner.plan(fn);
  }

  /** Serves waiters, in order, with whatever capacity there is now, then refills. */
  #pump(): void {
    this.#queue.serve((fn) => (this.#closed ? undefined : this.#plan(fn)));
    this.#refill.fill();
  }

  /** Drops a container that died while warm or idle, and replaces it. */
  #forget(container: Container): void {
    if (this.#containers.forget(container)) {
      this.#remove(container, 'exited while idle');
      this.#pump();
    }
  }
}
