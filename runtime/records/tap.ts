/**
 * @module
 * A stream's bytes, split into lines for the records store, cheaply when they are over the function's
 * rate: while the function's budget for this second is spent, whole chunks are dropped without being
 * split (their newlines are only counted, for the `N lines dropped` line), and the line cut by the
 * drop is skipped, so no torn line is kept. A flood of short lines then costs a scan for newlines
 * per chunk, not a string per line.
 */
import { LineSplitter } from '../stdio/line-splitter.ts';
import type { RecordStore } from './store.ts';
import type { LineInput } from './types.ts';

/** Feeds one stream's lines to the store. Call {@link end} when the stream ends. */
export class LineTap {
  readonly #store: RecordStore;
  readonly #base: Omit<LineInput, 'line'>;
  #splitter: LineSplitter;
  /** A chunk was dropped: what follows, up to the next newline, is the rest of a torn line. */
  #torn = false;

  /** Masks the function's secrets in each line (runtime/secrets/mask.ts). */
  readonly #mask: (line: string) => string;

  constructor(store: RecordStore, base: Omit<LineInput, 'line' | 'time'>, mask: (line: string) => string = (line) => line) {
    this.#store = store;
    this.#base = base;
    this.#mask = mask;
    this.#splitter = this.#newSplitter();
  }

  /** Feeds a chunk of the stream. */
  write(chunk: Buffer): void {
    const fn = this.#base.function;
    if (!this.#store.hasBudget(fn)) {
      this.#store.countDropped(fn, countLines(chunk));
      // The line the splitter holds in part is dropped with the rest.
      this.#torn = true;
      return;
    }
    let data = chunk;
    if (this.#torn) {
      const newline = data.indexOf(0x0a);
      if (newline === -1) return;
      data = data.subarray(newline + 1);
      this.#torn = false;
      this.#splitter = this.#newSplitter();
    }
    this.#splitter.write(data);
  }

  /** Flushes the last partial line. */
  end(): void {
    if (!this.#torn) this.#splitter.end();
  }

  #newSplitter(): LineSplitter {
    return new LineSplitter({ onLine: (line) => this.#store.line({ ...this.#base, line: this.#mask(line) }), maxBytes: Number.POSITIVE_INFINITY });
  }
}

/** The newlines in `chunk`: a plain loop, which is far cheaper than a native indexOf call per line. */
function countLines(chunk: Buffer): number {
  let count = 0;
  for (let i = 0; i < chunk.length; i += 1) if (chunk[i] === 0x0a) count += 1;
  return count;
}
