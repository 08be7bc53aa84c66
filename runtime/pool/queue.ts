/**
 * @module
 * The requests waiting for capacity, served in order. Each waits at most `timeoutMs` (then
 * NO_CAPACITY) and stops waiting when its signal aborts (then INVOCATION_ABORTED, or the signal's
 * own FnixError); at most `maxQueue` wait at once.
 */
import { FnixError } from '../errors.ts';
import type { FunctionVersion } from '../functions/version.ts';

/** Options for {@link WaitQueue}. */
export interface WaitQueueOptions {
  /** How long a request may wait. */
  timeoutMs: number;
  /** Requests that may wait at once. */
  maxQueue: number;
  /** What is busy, for NO_CAPACITY errors: `what` ("all 16 containers"), `unit` ("container") and details. */
  capacity: () => { what: string; unit: string; details: Record<string, unknown> };
}

interface Waiter<T> {
  fn: FunctionVersion;
  resolve: (grant: T) => void;
  reject: (error: unknown) => void;
}

/** A first-in, first-out queue of requests, each waiting for a grant of type `T`. */
export class WaitQueue<T> {
  readonly #options: WaitQueueOptions;
  #waiters: Waiter<T>[] = [];

  constructor(options: WaitQueueOptions) {
    this.#options = options;
  }

  get length(): number {
    return this.#waiters.length;
  }

  /**
   * Waits in line for a grant for `fn`.
   * @throws FnixError NO_CAPACITY, at once (not as a rejection), when `maxQueue` requests are waiting already.
   */
  wait(fn: FunctionVersion, signal: AbortSignal | undefined): Promise<T> {
    const { timeoutMs, maxQueue, capacity } = this.#options;
    if (this.#waiters.length >= maxQueue) {
      const { what, details } = capacity();
      throw new FnixError('NO_CAPACITY', `${what} are busy and ${this.#waiters.length} requests are waiting`, {
        details: { ...details, queued: this.#waiters.length },
      });
    }
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = {
        fn,
        resolve: (grant) => {
          cleanup();
          resolve(grant);
        },
        reject: (error) => {
          cleanup();
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        const { what, unit, details } = capacity();
        waiter.reject(
          new FnixError('NO_CAPACITY', `no ${unit} became free within ${timeoutMs} ms (${what} are busy)`, {
            details: { ...details, queueTimeoutMs: timeoutMs },
          }),
        );
      }, timeoutMs);
      const onAbort = () => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        // The client went away while it waited: not a failure of fnix's (a string reason would be one).
        const reason: unknown = signal?.reason;
        const { unit } = capacity();
        waiter.reject(
          reason instanceof FnixError ? reason : new FnixError('INVOCATION_ABORTED', `the client went away while its request waited for a ${unit}`),
        );
      };
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Grants waiters, in order, while `grantFor` finds one (undefined: no capacity, the rest wait). */
  serve(grantFor: (fn: FunctionVersion) => T | undefined): void {
    while (this.#waiters.length > 0) {
      const waiter = this.#waiters[0]!;
      const grant = grantFor(waiter.fn);
      if (grant === undefined) break;
      this.#waiters.shift();
      waiter.resolve(grant);
    }
  }

  /** Ends every wait with `makeError()`'s error (the pool is closing, or nothing can start). */
  rejectAll(makeError: () => unknown): void {
    for (const waiter of this.#waiters.splice(0)) waiter.reject(makeError());
  }
}
