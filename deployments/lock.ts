/**
 * @module
 * The deploy lock: one deployment (a push, a rollback, the first import) at a time. A holder is named,
 * so that whoever waits can be told what for.
 */

/** Held until `release` is called. */
export interface Held {
  release(): void;
}

/** A lock that waiters queue for, in order, each for a bounded time. */
export class DeployLock {
  #holder: string | undefined;
  #queue: Array<{ name: string; grant: () => void }> = [];

  /** Who holds it now. */
  get holder(): string | undefined {
    return this.#holder;
  }

  /**
   * Takes the lock, waiting at most `timeoutMs`; `onWait` is told, once, who holds it when it must wait.
   * Rejects with an Error naming the holder when the wait is too long, or when `signal` aborts (the one
   * who waited has gone: a dead push must not queue ahead of live ones).
   */
  async acquire(name: string, timeoutMs: number, onWait?: (holder: string) => void, signal?: AbortSignal): Promise<Held> {
    signal?.throwIfAborted();
    if (this.#holder !== undefined) {
      onWait?.(this.#holder);
      await new Promise<void>((resolve, reject) => {
        const leave = (error: Error) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          this.#queue = this.#queue.filter((w) => w !== waiter);
          reject(error);
        };
        const onAbort = () => leave(new Error(`${name} was given up while it waited for the deploy lock`));
        const waiter = {
          name,
          grant: () => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const timer = setTimeout(
          () => leave(new Error(`${this.#holder ?? 'another deployment'} still holds the deploy lock after ${timeoutMs} ms`)),
          timeoutMs,
        );
        signal?.addEventListener('abort', onAbort, { once: true });
        this.#queue.push(waiter);
      });
    } else {
      this.#holder = name;
    }
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const next = this.#queue.shift();
        this.#holder = next?.name;
        next?.grant();
      },
    };
  }
}
