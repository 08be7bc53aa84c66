/**
 * @module
 * Turns a function's stderr into log lines, bounded the way of-watchdog's bindLoggingPipe is: a line
 * longer than `maxLineBytes` is cut, and after `maxBytes` per invocation the rest is counted, not logged.
 */

/** Options for {@link LineSplitter}. */
export interface LineSplitterOptions {
  /** Called once per complete (or cut) line, without its newline. */
  onLine: (line: string) => void;
  /** @default 4096 */
  maxLineBytes?: number;
  /** Bytes logged per stream before the rest is dropped. @default 65536 */
  maxBytes?: number;
}

/** Splits bytes into lines within bounds. Call {@link LineSplitter.end} when the stream ends. */
export class LineSplitter {
  readonly #onLine: (line: string) => void;
  readonly #maxLineBytes: number;
  readonly #maxBytes: number;
  #partial: Buffer = Buffer.alloc(0);
  #logged = 0;
  #dropped = 0;

  constructor(options: LineSplitterOptions) {
    this.#onLine = options.onLine;
    this.#maxLineBytes = options.maxLineBytes ?? 4096;
    this.#maxBytes = options.maxBytes ?? 65_536;
  }

  /** Feeds a chunk of the stream. */
  write(chunk: Buffer): void {
    if (this.#logged >= this.#maxBytes) {
      this.#dropped += chunk.length;
      return;
    }
    let data = this.#partial.length ? Buffer.concat([this.#partial, chunk]) : chunk;
    for (let newline = data.indexOf(0x0a); newline !== -1; newline = data.indexOf(0x0a)) {
      this.#emitLine(data.subarray(0, newline));
      data = data.subarray(newline + 1);
      if (this.#logged >= this.#maxBytes) {
        this.#dropped += data.length;
        data = Buffer.alloc(0);
      }
    }
    // An unterminated line is cut as soon as it passes the limit, rather than held without bound.
    this.#partial = Buffer.from(this.#emitCutPieces(data));
  }

  /** Flushes the last partial line and reports what was dropped. */
  end(): void {
    if (this.#partial.length) this.#emitLine(this.#partial);
    this.#partial = Buffer.alloc(0);
    if (this.#dropped > 0) this.#onLine(`[${this.#dropped} more bytes of stderr not logged]`);
  }

  /** Emits a complete line (without its newline and CR), cut into pieces of at most maxLineBytes. */
  #emitLine(line: Buffer): void {
    this.#emit(this.#emitCutPieces(line.at(-1) === 0x0d ? line.subarray(0, -1) : line));
  }

  /** Emits maxLineBytes-long pieces, marked as cut, while more than maxLineBytes remain; returns the rest. */
  #emitCutPieces(bytes: Buffer): Buffer {
    let rest = bytes;
    while (rest.length > this.#maxLineBytes) {
      this.#emit(rest.subarray(0, this.#maxLineBytes), ' [line cut]');
      rest = rest.subarray(this.#maxLineBytes);
    }
    return rest;
  }

  #emit(bytes: Buffer, suffix = ''): void {
    if (this.#logged >= this.#maxBytes) {
      this.#dropped += bytes.length;
      return;
    }
    this.#logged += bytes.length + 1;
    this.#onLine(bytes.toString('utf8') + suffix);
  }
}
