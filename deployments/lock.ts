/**
 * @module
 * The deploy lock: one deployment (a push, a rollback, the first import, the start) at a time. A
 * holder is named, so that whoever waits can be told what for. The steps that need it (checking a
 * commit, activating a deployment) take the {@link Held} lock as an argument: only an operation that
 * acquired it can call them.
 */
import { FnixError } from '../runtime/errors.ts';

/** Proof of holding the lock, until `release` is called. */
export interface Held {
  /** What holds it (`the push of 1a2b3c4d5e6f`). */
  readonly name: string;
  release(): void;
}

/** The wait for the lock was given up (the one who waited went away): a dead push must not queue ahead of live ones. */
export class LockWaitAbandoned extends Error {
  override name = 'LockWaitAbandoned';
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
   * Takes the lock, waiting at most `timeoutMs`; `onWait` is told, once, who holds it when it must
   * wait. Throws DEPLOY_IN_PROGRESS, naming the holder, when the wait is too long, and
   * LockWaitAbandoned when `signal` aborts.
   */
  async acquire(name: string, timeoutMs: number, onWait?: (holder: string) => void, signal?: AbortSignal): Promise<Held> {
    if (signal?.aborted) throw new LockWaitAbandoned(`${name} was given up before it could wait for the deploy lock`);
    if (this.#holder !== undefined) {
      onWait?.(this.#holder);
      await new Promise<void>((resolve, reject) => {
        const leave = (error: Error) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          this.#queue = this.#queue.filter((w) => w !== waiter);
          reject(error);
        };
        const onAbort = () => leave(new LockWaitAbandoned(`${name} was given up while it waited for the deploy lock`));
        const waiter = {
          name,
          grant: () => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            resolve();
          },
        };
        const timer = setTimeout(() => {
          const holder = this.#holder ?? 'another deployment';
          leave(new FnixError('DEPLOY_IN_PROGRESS', `${holder} still holds the deploy lock after ${timeoutMs} ms`));
        }, timeoutMs);
        signal?.addEventListener('abort', onAbort, { once: true });
        this.#queue.push(waiter);
      });
    } else {
      this.#holder = name;
    }
    let released = false;
    return {
      name,
      release: () => {
        if (released) return;
        released = true;
        const next = this.#queue.shift();
        this.#holder = next?.name;
        next?.grant();
      },
    };
  }

  /** Runs `operation` holding the lock (acquired as {@link acquire} does), and releases it after. */
  async with<T>(name: string, timeoutMs: number, operation: (held: Held) => Promise<T>): Promise<T> {
    const held = await this.acquire(name, timeoutMs);
    try {
      return await operation(held);
    } finally {
      held.release();
    }
  }
}
