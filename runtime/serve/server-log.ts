/**
 * @module
 * A serve function's stdout and stderr, sent to the log a line at a time with the function and the
 * instance as prefix, as an invocation's stderr is. A server lives for hours, so the bound is a rate,
 * not a total: {@link LOG_BUDGET_BYTES} per {@link LOG_WINDOW_MS} and instance; lines beyond it are
 * counted, and the count is logged when the next window opens. Every line also goes to `sink`, when
 * there is one (the records store, which has a budget of its own).
 */
import type { Readable } from 'node:stream';
import type { Logger } from '../log.ts';
import { LineSplitter } from '../stdio/line-splitter.ts';

export const LOG_BUDGET_BYTES = 1024 * 1024;
export const LOG_WINDOW_MS = 60_000;

/** Told every line a server writes, whatever the log's budget. */
export type ServerOutputSink = (stream: 'stdout' | 'stderr', line: string) => void;

/** Options for {@link ServerLog}. */
export interface ServerLogOptions {
  log: Logger;
  /** Told every line, before the budget. @default none */
  sink?: ServerOutputSink | undefined;
  /** `[name instance]`. */
  prefix: string;
  /** Masks the function's secrets in each line, before the sink and the log (runtime/secrets/mask.ts). @default none */
  mask?: ((line: string) => string) | undefined;
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

  /** Logs what `stream` carries, line by line, until it ends; `name` is the stream the sink is told. */
  attach(stream: Readable, name: 'stdout' | 'stderr' = 'stdout'): void {
    const { sink, mask = (line: string) => line } = this.#options;
    const onLine = sink
      ? (text: string) => {
          const line = mask(text);
          sink(name, line);
          this.line(line);
        }
      : (text: string) => this.line(mask(text));
    const lines = new LineSplitter({ onLine, maxBytes: Number.POSITIVE_INFINITY });
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
