/**
 * @module
 * The warm pool. It keeps `size` generic containers (no network, no function yet) ready in the
 * background, hands a request one of them (specialising it) or, better, an idle container that already
 * serves the same function version, starts one when none is warm (a cold start), and queues requests
 * only when `maxContainers` are all busy or starting.
 *
 * Containers are reused for the same function version only, never across functions; between
 * invocations the agent kills every process and empties /tmp and /dev/shm.
 */
import { FnixError } from '../errors.ts';
import type { Container } from '../container/container.ts';
import type { LaunchRequest } from '../container/launcher.ts';
import type { FunctionVersion } from '../functions/version.ts';
import { KILL_DEADLINE_MS } from '../invocation/invocation.ts';
import { IdleSet } from './idle-set.ts';

/** What the pool needs from a launcher (runtime/container/launcher.ts). */
export interface ContainerSource {
  launch(request: LaunchRequest): Promise<Container>;
  remove(container: Container, reason: string): void;
  drain(): Promise<void>;
}

/** Options for {@link Pool}. */
export interface PoolOptions {
  source: ContainerSource;
  /** Generic containers kept warm. @default 4 */
  size?: number;
  /** Containers of every kind at most; requests queue beyond it. Required: the pool is always bounded. */
  maxContainers: number;
  /** How long a specialised container may stay idle before it is removed. @default 300_000 */
  idleTtlMs?: number;
  /** How long a request may wait for capacity before NO_CAPACITY. @default 10_000 */
  queueTimeoutMs?: number;
  /** Requests that may wait at once; more get NO_CAPACITY at once. @default 256 */
  maxQueue?: number;
  /** Reports background problems (a failed refill). */
  onError?: (error: unknown) => void;
}

/** A container handed to one invocation; give it back with {@link Pool.release}. */
export interface Lease {
  container: Container;
  /** True when no warm container was available, so one was started for this request. */
  coldStart: boolean;
  /** Where the time went, in ms. */
  timings: { waitMs: number; startMs: number; specializeMs: number };
}

/** Counts for /healthz and metrics. */
export interface PoolStats {
  /** Ready generic containers. */
  warm: number;
  /** Idle containers specialised for a function. */
  idle: number;
  busy: number;
  starting: number;
  queued: number;
  total: number;
  max: number;
  size: number;
  /** The last refill failure, cleared by the next success. */
  lastError: string | undefined;
}

interface Starting {
  promise: Promise<Container>;
  network: boolean;
  claimed: boolean;
}

/** A busy container whose invocation has ended: it comes back to the pool within a millisecond or so. */
interface Handoff {
  container: Container;
  /** A request is waiting for it. */
  claimed: boolean;
  handed: boolean;
  settle: (container: Container | undefined) => void;
  promise: Promise<Container | undefined>;
}

type Plan =
  | { kind: 'idle'; container: Container }
  | { kind: 'handoff'; handoff: Handoff }
  | { kind: 'generic'; container: Container }
  | { kind: 'start'; starting: Starting; claimedFromRefill: boolean };

interface Waiter {
  fn: FunctionVersion;
  resolve: (plan: Plan) => void;
  reject: (error: unknown) => void;
}

const REFILL_BACKOFF_MAX_MS = 30_000;
/** How long a request waits for a finishing container of its function before taking another. */
const HANDOFF_WAIT_MS = 50;

/** A bounded pool of containers. */
export class Pool {
  readonly size: number;
  readonly maxContainers: number;
  readonly #source: ContainerSource;
  readonly #queueTimeoutMs: number;
  readonly #maxQueue: number;
  readonly #onError: (error: unknown) => void;
  readonly #idle: IdleSet;
  /** The function versions served, once a deployment said so: containers of others are not kept. */
  #served: Set<string> | undefined;
  #generic: Container[] = [];
  #starting = new Set<Starting>();
  #busy = new Set<Container>();
  #finishing = new Map<Container, Handoff>();
  #queue: Waiter[] = [];
  #generation = 0;
  #closed = false;
  #backoffMs = 0;
  #backoffTimer: NodeJS.Timeout | undefined;
  #lastError: string | undefined;

  constructor(options: PoolOptions) {
    if (!Number.isInteger(options.maxContainers) || options.maxContainers < 1) {
      throw new TypeError(`maxContainers must be a positive integer, got ${options.maxContainers}`);
    }
    this.size = options.size ?? 4;
    if (!Number.isInteger(this.size) || this.size < 0 || this.size > options.maxContainers) {
      throw new TypeError(`size must be an integer from 0 to maxContainers (${options.maxContainers}), got ${this.size}`);
    }
    this.maxContainers = options.maxContainers;
    this.#source = options.source;
    this.#queueTimeoutMs = options.queueTimeoutMs ?? 10_000;
    this.#maxQueue = options.maxQueue ?? 256;
    this.#onError = options.onError ?? (() => {});
    this.#idle = new IdleSet({
      max: options.maxContainers,
      ttlMs: options.idleTtlMs ?? 300_000,
      onDrop: (container, reason) => {
        this.#remove(container, `idle container ${reason}`);
        if (reason === 'expired') queueMicrotask(() => this.#pump());
      },
    });
  }

  /** Fills the pool; rejects with the cause when not one of its containers could be started. */
  async start(): Promise<void> {
    this.#refill();
    const results = await Promise.allSettled([...this.#starting].map((s) => s.promise));
    const failures = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected');
    if (failures.length > 0 && failures.length === results.length) throw failures[0]!.reason;
  }

  /**
   * A container serving `fn`, specialised and idle. Waits (up to queueTimeoutMs) when the pool is at
   * maxContainers with every container busy. Throws NO_CAPACITY, SHUTTING_DOWN or CONTAINER_START_FAILED.
   */
  async acquire(fn: FunctionVersion, options: { signal?: AbortSignal | undefined } = {}): Promise<Lease> {
    const begin = performance.now();
    let plan = this.#plan(fn) ?? (await this.#wait(fn, options.signal));
    while (plan.kind === 'handoff') {
      // A container handed over is as good as an idle one: specialised for fn, and warm.
      const container = await this.#awaitHandoff(plan.handoff);
      plan = container ? { kind: 'idle', container } : (this.#plan(fn) ?? (await this.#wait(fn, options.signal)));
    }
    const waitMs = performance.now() - begin;
    let container: Container;
    let startMs = 0;
    if (plan.kind === 'start') {
      try {
        container = await plan.starting.promise;
      } catch (error) {
        this.#starting.delete(plan.starting);
        this.#recordStartFailure(error);
        this.#pump(); // its place under maxContainers is free again
        throw error;
      }
      this.#starting.delete(plan.starting);
      startMs = performance.now() - begin - waitMs;
      if (this.#closed) {
        this.#remove(container, 'pool closed');
        throw shuttingDown();
      }
    } else {
      container = plan.container;
    }
    this.#busy.add(container);
    const specializeBegin = performance.now();
    if (plan.kind !== 'idle') {
      try {
        await container.specialize(fn);
      } catch (error) {
        this.#busy.delete(container);
        this.#remove(container, 'specialisation failed');
        this.#pump();
        throw new FnixError('CONTAINER_START_FAILED', `preparing a container for ${fn.key} failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    this.#refill();
    return {
      container,
      coldStart: plan.kind === 'start',
      timings: { waitMs, startMs, specializeMs: performance.now() - specializeBegin },
    };
  }

  /**
   * Says that `container`'s invocation has ended and the container will be released shortly. A request
   * for the same function arriving in between then waits for it, instead of taking another container.
   */
  finishing(container: Container): void {
    if (!this.#busy.has(container) || this.#finishing.has(container)) return;
    let settle!: (container: Container | undefined) => void;
    const promise = new Promise<Container | undefined>((resolve) => (settle = resolve));
    this.#finishing.set(container, { container, claimed: false, handed: false, settle, promise });
  }

  /** Gives a container back after its invocation; `reusable` is false when it must be retired. */
  release(container: Container, reusable: boolean): void {
    const handoff = this.#finishing.get(container);
    this.#finishing.delete(container);
    if (handoff?.claimed && reusable && !this.#closed && container.isAlive) {
      handoff.handed = true; // it stays busy, for the request that waited for it
      handoff.settle(container);
      return;
    }
    handoff?.settle(undefined);
    if (!this.#busy.delete(container)) return;
    const retired = container.specializedFor !== undefined && this.#served !== undefined && !this.#served.has(container.specializedFor);
    if (reusable && !retired && !this.#closed && container.isAlive) this.#idle.add(container);
    else this.#remove(container, !reusable ? 'not reusable' : retired ? `${container.specializedFor} retired` : 'pool closed');
    this.#pump();
  }

  /**
   * Called after a build added store paths. Generic containers started before may not see them (an
   * overlay's lower folder changed under it), so they are replaced.
   */
  markStoreChanged(): void {
    this.#generation += 1;
    for (const container of this.#generic.splice(0)) this.#remove(container, 'store changed');
    this.#refill();
  }

  /** Removes the idle containers of a function version that is no longer served. */
  retire(key: string): void {
    this.#served?.delete(key);
    for (const container of this.#idle.takeAll(key)) this.#remove(container, `${key} retired`);
    this.#pump();
  }

  /**
   * Says which function versions are served from now on (a deployment was activated): idle containers
   * of any other version go now, and the others (busy, or still being specialised for a request that
   * took the old version just before the switch) when they are released.
   */
  serve(keys: Iterable<string>): void {
    const served = new Set(keys);
    this.#served = served;
    for (const container of this.#idle.takeAll()) {
      if (served.has(container.specializedFor!)) this.#idle.add(container);
      else this.#remove(container, `${container.specializedFor} retired`);
    }
    this.#pump();
  }

  stats(): PoolStats {
    const starting = this.#starting.size;
    return {
      warm: this.#generic.length,
      idle: this.#idle.size,
      busy: this.#busy.size,
      starting,
      queued: this.#queue.length,
      total: this.#total(),
      max: this.maxContainers,
      size: this.size,
      lastError: this.#lastError,
    };
  }

  /** Refuses new work, removes idle containers, waits for busy ones up to `graceMs`, then removes all. */
  async close(graceMs = 10_000): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#backoffTimer);
    for (const waiter of this.#queue.splice(0)) waiter.reject(shuttingDown());
    for (const container of [...this.#generic.splice(0), ...this.#idle.takeAll()]) this.#remove(container, 'pool closed');
    await this.#waitForIdle(graceMs);
    // Past the grace period, invocations are stopped as such (SHUTTING_DOWN), then their containers go.
    for (const container of this.#busy) container.stopInvocation('shutdown');
    await this.#waitForIdle(KILL_DEADLINE_MS + 100);
    for (const container of this.#busy) this.#remove(container, 'pool closed');
    this.#busy.clear();
    await Promise.allSettled([...this.#starting].map((s) => s.promise));
    await this.#source.drain();
  }

  async #waitForIdle(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#busy.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  }

  #total(): number {
    return this.#generic.length + this.#starting.size + this.#idle.size + this.#busy.size;
  }

  /** Decides synchronously how `fn` gets a container, reserving it; undefined means wait. */
  #plan(fn: FunctionVersion): Plan | undefined {
    if (this.#closed) throw shuttingDown();
    const idle = this.#idle.take(fn.key);
    if (idle) return { kind: 'idle', container: idle };
    for (const handoff of this.#finishing.values()) {
      if (!handoff.claimed && handoff.container.specializedFor === fn.key) {
        handoff.claimed = true;
        return { kind: 'handoff', handoff };
      }
    }
    const network = fn.manifest.network;
    if (!network) {
      const generic = this.#generic.pop();
      if (generic) return { kind: 'generic', container: generic };
    }
    for (const starting of this.#starting) {
      if (!starting.claimed && starting.network === network) {
        starting.claimed = true;
        return { kind: 'start', starting, claimedFromRefill: true };
      }
    }
    if (this.#total() >= this.maxContainers && !this.#makeRoom()) return undefined;
    return { kind: 'start', starting: this.#launch(network, true), claimedFromRefill: false };
  }

  /** Waits briefly for a finishing container; undefined when it did not come back in time, or not reusable. */
  async #awaitHandoff(handoff: Handoff): Promise<Container | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), HANDOFF_WAIT_MS)));
    const container = await Promise.race([handoff.promise, late]);
    clearTimeout(timer);
    if (container) return container;
    handoff.claimed = false; // if it comes back later, it goes to the idle set as usual
    return handoff.handed ? handoff.container : undefined;
  }

  /** Removes one idle container (the least recently used) or, failing that, one generic container. */
  #makeRoom(): boolean {
    if (this.#idle.evictOldest()) return true;
    const generic = this.#generic.shift();
    if (generic) this.#remove(generic, 'room for another function');
    return generic !== undefined;
  }

  #wait(fn: FunctionVersion, signal: AbortSignal | undefined): Promise<Plan> {
    if (this.#queue.length >= this.#maxQueue) {
      throw new FnixError('NO_CAPACITY', `all ${this.maxContainers} containers are busy and ${this.#queue.length} requests are waiting`, {
        details: { maxContainers: this.maxContainers, queued: this.#queue.length },
      });
    }
    return new Promise<Plan>((resolve, reject) => {
      const waiter: Waiter = {
        fn,
        resolve: (plan) => {
          cleanup();
          resolve(plan);
        },
        reject: (error) => {
          cleanup();
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.#queue = this.#queue.filter((w) => w !== waiter);
        waiter.reject(
          new FnixError('NO_CAPACITY', `no container became free within ${this.#queueTimeoutMs} ms (all ${this.maxContainers} are busy)`, {
            details: { maxContainers: this.maxContainers, queueTimeoutMs: this.#queueTimeoutMs },
          }),
        );
      }, this.#queueTimeoutMs);
      const onAbort = () => {
        this.#queue = this.#queue.filter((w) => w !== waiter);
        // The client went away while it waited: not a failure of fnix's (a string reason would be one).
        const reason: unknown = signal?.reason;
        waiter.reject(
          reason instanceof FnixError ? reason : new FnixError('INVOCATION_ABORTED', 'the client went away while its request waited for a container'),
        );
      };
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  /** Serves waiters, in order, with whatever capacity there is now. */
  #pump(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      const waiter = this.#queue[0]!;
      const plan = this.#plan(waiter.fn);
      if (!plan) break;
      this.#queue.shift();
      waiter.resolve(plan);
    }
    this.#refill();
  }

  #launch(network: boolean, claimed: boolean): Starting {
    const generation = this.#generation;
    const starting: Starting = { network, claimed, promise: this.#source.launch({ network, storeGeneration: generation }) };
    this.#starting.add(starting);
    starting.promise.then(
      (container) => {
        void container.exited.then(() => this.#forget(container));
        this.#backoffMs = 0;
        this.#lastError = undefined;
        if (starting.claimed) return; // the claimer takes it (and removes the entry)
        this.#starting.delete(starting);
        if (this.#closed || container.storeGeneration !== this.#generation) this.#remove(container, 'stale');
        else this.#generic.push(container);
        this.#pump();
      },
      (error: unknown) => {
        if (starting.claimed) return; // the claimer reports it
        this.#starting.delete(starting);
        this.#recordStartFailure(error);
        this.#backoffMs = Math.min(REFILL_BACKOFF_MAX_MS, Math.max(1000, this.#backoffMs * 2));
        this.#backoffTimer = setTimeout(() => {
          this.#backoffTimer = undefined;
          this.#refill();
        }, this.#backoffMs);
      },
    );
    return starting;
  }

  /** Starts generic containers until `size` are warm or starting, within maxContainers. */
  #refill(): void {
    if (this.#closed || this.#backoffTimer) return;
    const unclaimed = () => [...this.#starting].filter((s) => !s.claimed && !s.network).length;
    while (this.#generic.length + unclaimed() < this.size && this.#total() < this.maxContainers) {
      this.#launch(false, false);
    }
  }

  #recordStartFailure(error: unknown): void {
    this.#lastError = (error as Error).message;
    this.#onError(error);
  }

  /** Drops a container that died while warm or idle, and replaces it. */
  #forget(container: Container): void {
    const index = this.#generic.indexOf(container);
    if (index !== -1) this.#generic.splice(index, 1);
    if (index !== -1 || this.#idle.delete(container)) {
      this.#remove(container, 'exited while idle');
      this.#pump();
    }
  }

  #remove(container: Container, reason: string): void {
    this.#source.remove(container, reason);
  }
}

function shuttingDown(): FnixError {
  return new FnixError('SHUTTING_DOWN', 'fnix is shutting down and accepts no new invocations');
}
