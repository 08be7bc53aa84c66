/**
 * @module
 * A serve function's stdout and stderr, sent to the log a line at a time with the function and the
 * instance as prefix, as an invocation's stderr is. A server lives for hours, so the bound is a rate,
 * not a total: {@link LOG_BUDGET_BYTES} per {@link LOG_WINDOW_MS} and instance; lines beyond it are
 * counted, and the count is logged when the next window opens.
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../log.ts';
import { LineSplitter } from '../stdio/line-splitter.ts';

export const LOG_BUDGET_BYTES = 1024 * 1024;
export const LOG_WINDOW_MS = 60_000;

/** Options for {@link ServerLog}. */
export interface ServerLogOptions {
  log: Logger;
  /** `[name instance]`. */
  prefix: string;
  /** @default LOG_BUDGET_BYTES */
  budgetBytes?: number;
  /** @default LOG_WINDOW_MS */
  windowMs?: number;
  /** @default performance.now */
  now?: () => number;
}

/** The log of one server. */
export class ServerLog {
  readonly #options: ServerLogOptions;
  readonly #now: () => number;
  #windowStart: number;
  #used = 0;
  #dropped = 0;

  constructor(options: ServerLogOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => performance.now());
    this.#windowStart = this.#now();
  }

  /** Logs what `stream` carries, line by line, until it ends. */
  attach(stream: Readable): void {
    const lines = new LineSplitter({ onLine: (line) => this.line(line), maxBytes: Number.POSITIVE_INFINITY });
    stream.on('data', (chunk: Buffer) => lines.write(chunk));
    stream.on('end', () => {
      lines.end();
      this.#reportDropped();
    });
  }

  /** Logs one line, within the budget. */
  line(text: string): void {
    const { log, prefix } = this.#options;
    const now = this.#now();
    if (now - this.#windowStart >= (this.#options.windowMs ?? LOG_WINDOW_MS)) {
      this.#reportDropped();
      this.#windowStart = now;
      this.#used = 0;
    }
    this.#used += Buffer.byteLength(text) + 1;
    if (this.#used > this.#budget) {
      this.#dropped += 1;
      return;
    }
    log.info(`${prefix} ${text}`);
  }

  /** Logs how many lines were dropped since the last report, if any. */
  #reportDropped(): void {
    if (this.#dropped === 0) return;
    this.#options.log.warn(
      `${this.#options.prefix} ${this.#dropped} lines of output were not logged: over ${this.#budget} bytes in ${(this.#options.windowMs ?? LOG_WINDOW_MS) / 1000} s`,
    );
    this.#dropped = 0;
  }

  get #budget(): number {
    return this.#options.budgetBytes ?? LOG_BUDGET_BYTES;
  }
}
