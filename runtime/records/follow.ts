/**
 * @module
 * Followers of a function's log: each is told every line stored from the moment it subscribed, in
 * order, right after the flush that stored it. The number of followers is capped; each follower bounds
 * its own buffering (gateway/routes/logs.ts cuts a slow one).
 */
import { FnixError } from '../errors.ts';
import type { LogLine } from './types.ts';

/** A stored line with its position in the store (increasing). */
export interface StoredLine extends LogLine {
  seq: number;
}

/** Told each new line of the function it follows. */
export type LineListener = (line: StoredLine) => void;

/** The followers, by function. */
export class Followers {
  readonly #max: number;
  readonly #byFunction = new Map<string, Set<LineListener>>();
  /** What each follower is told when the store closes. */
  readonly #onClose = new Map<LineListener, () => void>();
  #count = 0;

  /** `max`: followers at once, over every function. */
  constructor(max: number) {
    this.#max = max;
  }

  /** Followers now. */
  get count(): number {
    return this.#count;
  }

  /**
   * Subscribes `listener` to `fn`'s new lines; returns the unsubscribe. `onClose` is called if the
   * store closes first. Throws NO_CAPACITY past the cap.
   */
  add(fn: string, listener: LineListener, onClose?: () => void): () => void {
    if (this.#count >= this.#max) {
      throw new FnixError('NO_CAPACITY', `${this.#max} log followers are connected, which is the most; retry later, or stop one`, {
        details: { maxFollowers: this.#max },
      });
    }
    let set = this.#byFunction.get(fn);
    if (!set) {
      set = new Set();
      this.#byFunction.set(fn, set);
    }
    set.add(listener);
    if (onClose) this.#onClose.set(listener, onClose);
    this.#count += 1;
    return () => {
      this.#onClose.delete(listener);
      if (!set.delete(listener)) return;
      this.#count -= 1;
      if (set.size === 0 && this.#byFunction.get(fn) === set) this.#byFunction.delete(fn);
    };
  }

  /** Whether anyone follows `fn`. */
  has(fn: string): boolean {
    return this.#byFunction.has(fn);
  }

  /** Tells each line's followers. A listener that throws is unsubscribed: one follower's bug never stops a flush. */
  publish(line: StoredLine): void {
    const set = this.#byFunction.get(line.function);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(line);
      } catch {
        this.#onClose.delete(listener);
        if (set.delete(listener)) this.#count -= 1;
      }
    }
  }

  /** Ends every follower: the store is closing. */
  closeAll(): void {
    const ends = [...this.#onClose.values()];
    this.#onClose.clear();
    for (const set of this.#byFunction.values()) set.clear();
    this.#byFunction.clear();
    this.#count = 0;
    for (const end of ends) {
      try {
        end();
      } catch {
        // One follower's failure to end does not keep the others open.
      }
    }
  }
}
