/**
 * @module
 * The instances of one serve function version, and how requests get a place in one. A request takes a
 * slot of a ready instance with fewer than `concurrency` requests (the least loaded; the oldest of
 * those, so that quiet traffic settles on few instances and the rest can idle out). When every slot is
 * taken the request waits in line (FNIX_QUEUE_TIMEOUT_MS, then NO_CAPACITY), and an instance is started
 * for it, up to `maxInstances`. An instance idle for `idleTimeoutMs` stops, never below `minInstances`
 * while the version is served. One that ends is replaced as needed; starts that fail back off (1 s,
 * doubling to 30 s), and while none is running the requests get the last start's error at once.
 */
import { FnixError } from '../errors.ts';
import type { ServeSettings } from '../functions/manifest.ts';
import type { FunctionVersion } from '../functions/version.ts';
import { nextBackoff } from '../pool/refill.ts';
import { WaitQueue } from '../pool/queue.ts';
import { type ServeInstance, serveSettings } from './instance.ts';

/** Marks the error of a version that is no longer served: the caller may take the one served now. */
export const RETIRED = 'retired';

function retired(fn: FunctionVersion): FnixError {
  return new FnixError('SHUTTING_DOWN', `version ${fn.version} of function '${fn.name}' is no longer served`, {
    details: { function: fn.name, [RETIRED]: true },
  });
}

/** Whether `error` says the version is no longer served (see {@link RETIRED}). */
export function isRetired(error: unknown): boolean {
  return error instanceof FnixError && error.details[RETIRED] === true;
}

/** An instance whose server ends on its own within this long of becoming ready is replaced after a backoff. */
export const CRASH_LOOP_MS = 10_000;

/** A request's place in an instance; give it back with release() once the response has ended. */
export interface Slot {
  instance: ServeInstance;
  /** Ends the request's hold. `replace`: the instance is stopped (a request it did not answer in time). */
  release(options?: { replace?: boolean }): void;
}

/** What {@link InstanceGroup} works with. */
export interface InstanceGroupOptions {
  fn: FunctionVersion;
  /** Starts an instance of `fn` and resolves once it is ready. */
  start: (fn: FunctionVersion) => Promise<ServeInstance>;
  /** How long a request may wait for a slot. */
  queueTimeoutMs: number;
  maxQueue: number;
  /** Told of every instance that ended, and of every start that failed. */
  onEnded: (instance: ServeInstance) => void;
  onStartFailed: (error: FnixError) => void;
}

/** The instances of one function version. */
export class InstanceGroup {
  readonly fn: FunctionVersion;
  readonly settings: ServeSettings;
  readonly #options: InstanceGroupOptions;
  readonly #instances = new Set<ServeInstance>();
  readonly #idleTimers = new Map<ServeInstance, NodeJS.Timeout>();
  readonly #queue: WaitQueue<Slot>;
  readonly #readyWaiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  #starting = 0;
  /** Whether minInstances apply: the version is the one served. */
  #served = false;
  #closed = false;
  #backoffMs = 0;
  #backoffTimer: NodeJS.Timeout | undefined;
  #lastStartError: FnixError | undefined;
  #drained: (() => void) | undefined;
  #draining: Promise<void> | undefined;

  constructor(options: InstanceGroupOptions) {
    this.fn = options.fn;
    this.settings = serveSettings(options.fn);
    this.#options = options;
    const capacity = () => ({
      what: `all ${this.#instances.size} instances of '${this.fn.name}' (concurrency ${this.settings.concurrency} each, maxInstances ${this.settings.maxInstances})`,
      unit: 'instance',
      details: { function: this.fn.name, instances: this.#instances.size, maxInstances: this.settings.maxInstances, concurrency: this.settings.concurrency },
    });
    this.#queue = new WaitQueue({ timeoutMs: options.queueTimeoutMs, maxQueue: options.maxQueue, capacity });
  }

  /** The instances, running or stopping. */
  get instances(): ReadonlySet<ServeInstance> {
    return this.#instances;
  }

  /** Instances being started now. */
  get starting(): number {
    return this.#starting;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Requests under way in all instances. */
  get inFlight(): number {
    let total = 0;
    for (const instance of this.#instances) total += instance.inFlight;
    return total;
  }

  /**
   * A slot in a ready instance. Throws NO_CAPACITY (the line is full, or no slot came free in time),
   * INVOCATION_ABORTED (the signal), SHUTTING_DOWN, or the last start's error while none can start.
   */
  acquire(signal?: AbortSignal): Promise<Slot> {
    const slot = this.#take();
    if (slot) return Promise.resolve(slot);
    return this.#wait(signal);
  }

  /** A slot in a ready instance if one is free now; undefined when the request would have to wait. */
  tryAcquire(): Slot | undefined {
    return this.#take();
  }

  #wait(signal: AbortSignal | undefined): Promise<Slot> {
    // A version no longer served finishes what its instances hold; a request that finds no free place
    // in them is told so, and takes the version served now (RETIRED).
    if (this.#closed) return Promise.reject(retired(this.fn));
    if (this.#backoffTimer && this.#instances.size === 0 && this.#starting === 0 && this.#lastStartError) {
      return Promise.reject(this.#lastStartError);
    }
    let waiting: Promise<Slot>;
    try {
      waiting = this.#queue.wait(this.fn, signal);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#scale();
    return waiting;
  }

  /**
   * Serves the version from now on (minInstances apply), and resolves once minInstances are ready.
   * Rejects with the start error when one of them cannot start.
   */
  warm(): Promise<void> {
    this.#served = true;
    this.#keepMinimum();
    if (this.#readyCount() >= this.settings.minInstances) return Promise.resolve();
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  /** No longer served: instances stop as soon as they are idle. Resolves when all have. */
  drain(): Promise<void> {
    if (this.#draining) return this.#draining;
    this.#served = false;
    this.#closed = true;
    const done = new Promise<void>((resolve) => {
      this.#drained = resolve;
    });
    this.#draining = done;
    clearTimeout(this.#backoffTimer);
    this.#settleReadyWaiters(retired(this.fn));
    // Requests in line for this version take the version served now (they are told it is retired),
    // rather than wait for a busy instance that will not be replaced.
    this.#queue.rejectAll(() => retired(this.fn));
    for (const instance of this.#instances) if (instance.inFlight === 0) instance.stop('its version is no longer served');
    this.#checkDrained();
    return done;
  }

  /** Stops every instance now, and fails the requests in line with `error`. */
  stopAll(reason: string, error: FnixError): void {
    this.#closed = true;
    this.#served = false;
    clearTimeout(this.#backoffTimer);
    this.#queue.rejectAll(() => error);
    this.#settleReadyWaiters(error);
    for (const instance of this.#instances) instance.stop(reason);
  }

  /** Takes a slot now, or undefined when every ready instance is full. */
  #take(): Slot | undefined {
    let best: ServeInstance | undefined;
    for (const instance of this.#instances) {
      if (instance.state !== 'ready' || instance.inFlight >= this.settings.concurrency) continue;
      if (!best || instance.inFlight < best.inFlight) best = instance;
    }
    if (!best) return undefined;
    const instance = best;
    instance.inFlight += 1;
    instance.requests += 1;
    clearTimeout(this.#idleTimers.get(instance));
    this.#idleTimers.delete(instance);
    let released = false;
    return {
      instance,
      release: (options = {}) => {
        if (released) return;
        released = true;
        instance.inFlight -= 1;
        if (options.replace) instance.stop('a request it held passed its timeoutMs');
        this.#pump();
        if (instance.inFlight === 0) this.#idle(instance);
      },
    };
  }

  /** Starts instances while the requests in line outnumber the slots being started, up to maxInstances. */
  #scale(): void {
    const { concurrency, maxInstances } = this.settings;
    while (!this.#closed && !this.#backoffTimer && this.#queue.length > this.#starting * concurrency && this.#live() + this.#starting < maxInstances) {
      this.#start();
    }
  }

  /** Keeps minInstances running or starting while the version is served. */
  #keepMinimum(): void {
    if (!this.#served || this.#closed) return;
    while (!this.#backoffTimer && this.#live() + this.#starting < this.settings.minInstances) this.#start();
  }

  #start(): void {
    this.#starting += 1;
    this.#options.start(this.fn).then(
      (instance) => {
        this.#starting -= 1;
        this.#lastStartError = undefined;
        this.#instances.add(instance);
        void instance.ended.then(() => this.#ended(instance));
        if (this.#closed && this.#queue.length === 0) instance.stop('its version is no longer served');
        this.#pump();
        if (instance.inFlight === 0) this.#idle(instance);
        if (this.#readyCount() >= this.settings.minInstances) this.#settleReadyWaiters();
      },
      (error: unknown) => {
        this.#starting -= 1;
        const failure =
          error instanceof FnixError ? error : new FnixError('SERVER_NOT_READY', `an instance of '${this.fn.name}' did not start: ${String(error)}`);
        this.#lastStartError = failure;
        this.#options.onStartFailed(failure);
        this.#settleReadyWaiters(failure);
        // With nothing running or starting, the requests in line would only wait out their deadline.
        if (this.#instances.size === 0 && this.#starting === 0) this.#queue.rejectAll(() => failure);
        if (this.#closed) {
          this.#checkDrained();
          return;
        }
        this.#backOff();
      },
    );
  }

  /** Holds starts back for the next backoff (1 s, doubling to 30 s), then serves and scales again. */
  #backOff(): void {
    this.#backoffMs = nextBackoff(this.#backoffMs);
    clearTimeout(this.#backoffTimer);
    this.#backoffTimer = setTimeout(() => {
      this.#backoffTimer = undefined;
      this.#pump();
    }, this.#backoffMs);
    this.#backoffTimer.unref();
  }

  /** Serves the requests in line with the slots there are, then scales and keeps the minimum. */
  #pump(): void {
    this.#queue.serve(() => this.#take());
    this.#scale();
    this.#keepMinimum();
    if (this.#closed) {
      for (const instance of this.#instances) if (instance.inFlight === 0 && this.#queue.length === 0) instance.stop('its version is no longer served');
    }
  }

  /** An instance with nothing to do: stopped after idleTimeoutMs, unless it is one of the minimum. */
  #idle(instance: ServeInstance): void {
    if (this.#closed || instance.state !== 'ready') return;
    clearTimeout(this.#idleTimers.get(instance));
    const timer = setTimeout(() => {
      this.#idleTimers.delete(instance);
      if (instance.inFlight > 0 || instance.state !== 'ready') return;
      const floor = this.#served ? this.settings.minInstances : 0;
      if (this.#readyCount() > floor) instance.stop(`idle for its idleTimeoutMs of ${this.settings.idleTimeoutMs} ms`);
    }, this.settings.idleTimeoutMs);
    timer.unref();
    this.#idleTimers.set(instance, timer);
  }

  #ended(instance: ServeInstance): void {
    this.#instances.delete(instance);
    clearTimeout(this.#idleTimers.get(instance));
    this.#idleTimers.delete(instance);
    this.#options.onEnded(instance);
    // A server that dies soon after it became ready would otherwise be started again and again at once.
    const upMs = Date.now() - instance.startedAt.getTime() - instance.startMs;
    if (!instance.stopReason && !this.#closed && upMs < CRASH_LOOP_MS) this.#backOff();
    else if (upMs >= CRASH_LOOP_MS) this.#backoffMs = 0; // a long life: the failures before it are forgotten
    this.#pump();
    this.#checkDrained();
  }

  #checkDrained(): void {
    if (this.#closed && this.#instances.size === 0 && this.#starting === 0) {
      this.#queue.rejectAll(() => retired(this.fn));
      this.#drained?.();
    }
  }

  /** Instances that are or will be ready (not stopping). */
  #live(): number {
    let count = 0;
    for (const instance of this.#instances) if (instance.state === 'starting' || instance.state === 'ready') count += 1;
    return count;
  }

  #readyCount(): number {
    let count = 0;
    for (const instance of this.#instances) if (instance.state === 'ready') count += 1;
    return count;
  }

  #settleReadyWaiters(error?: unknown): void {
    for (const waiter of this.#readyWaiters.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }
}
