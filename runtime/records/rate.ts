/**
 * @module
 * The write budget of each function's log: so many bytes per one-second window. A line beyond it is
 * counted and dropped; once the window is over, the count is reported (the store writes it as a `fnix`
 * line), so a flood costs the disk and the CPU a bounded amount per second and leaves a trace.
 */

/** How long one budget window lasts. */
export const RATE_WINDOW_MS = 1000;

/** Lines a function had dropped in a window that is over. */
export interface DroppedReport {
  function: string;
  dropped: number;
  /** When the window began (ms since the epoch). */
  since: number;
}

interface Window {
  start: number;
  used: number;
  dropped: number;
  /** A line was refused: the budget is spent for the rest of the window. */
  spent: boolean;
}

/** Byte budgets per function and window. */
export class RateBudget {
  readonly #perWindow: number;
  readonly #windows = new Map<string, Window>();

  /** `perSecond`: the bytes each function may write per second. */
  constructor(perSecond: number) {
    this.#perWindow = perSecond;
  }

  /**
   * Takes `bytes` of `fn`'s budget at `now`: true when they fit. When a window with drops has just
   * ended, its report is pushed to `reports` first.
   */
  take(fn: string, bytes: number, now: number, reports: DroppedReport[]): boolean {
    const window = this.#current(fn, now, reports);
    if (window.spent || window.used + bytes > this.#perWindow) {
      window.spent = true;
      window.dropped += 1;
      return false;
    }
    window.used += bytes;
    return true;
  }

  /** Whether `fn` has budget left at `now` (as {@link take}, reports of ended windows go to `reports`). */
  hasRoom(fn: string, now: number, reports: DroppedReport[]): boolean {
    const window = this.#current(fn, now, reports);
    return !window.spent && window.used < this.#perWindow;
  }

  /** Counts `lines` of `fn` dropped at `now` without being offered (a chunk dropped whole). */
  drop(fn: string, lines: number, now: number, reports: DroppedReport[]): void {
    this.#current(fn, now, reports).dropped += lines;
  }

  /** `fn`'s window at `now`, a new one when the last is over (its drops reported). */
  #current(fn: string, now: number, reports: DroppedReport[]): Window {
    let window = this.#windows.get(fn);
    if (window && now - window.start >= RATE_WINDOW_MS) {
      if (window.dropped > 0) reports.push({ function: fn, dropped: window.dropped, since: window.start });
      window = undefined;
    }
    if (!window) {
      window = { start: now, used: 0, dropped: 0, spent: false };
      this.#windows.set(fn, window);
    }
    return window;
  }

  /** Reports the windows over by `now` that dropped lines, and forgets every window that is over. */
  sweep(now: number): DroppedReport[] {
    const reports: DroppedReport[] = [];
    for (const [fn, window] of this.#windows) {
      if (now - window.start < RATE_WINDOW_MS) continue;
      if (window.dropped > 0) reports.push({ function: fn, dropped: window.dropped, since: window.start });
      this.#windows.delete(fn);
    }
    return reports;
  }

  /** Reports every window's drops now, over or not (the store is closing). */
  drainAll(): DroppedReport[] {
    const reports = [...this.#windows].filter(([, w]) => w.dropped > 0).map(([fn, w]) => ({ function: fn, dropped: w.dropped, since: w.start }));
    this.#windows.clear();
    return reports;
  }
}
