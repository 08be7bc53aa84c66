/**
 * @module
 * A bounded buffer that keeps the last N bytes written to it: the stderr tail in error reports.
 */

/** Keeps the last `limit` bytes. */
export class TailBuffer {
  readonly limit: number;
  #chunks: Buffer[] = [];
  #length = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Appends bytes, dropping the oldest beyond the limit. */
  push(chunk: Buffer): void {
    if (chunk.length >= this.limit) {
      this.#chunks = [Buffer.from(chunk.subarray(chunk.length - this.limit))];
      this.#length = this.limit;
      return;
    }
    this.#chunks.push(Buffer.from(chunk));
    this.#length += chunk.length;
    while (this.#length - this.#chunks[0]!.length >= this.limit) this.#length -= this.#chunks.shift()!.length;
  }

  /** The kept bytes as UTF-8 text (a multi-byte character cut at the start shows as U+FFFD). */
  toString(): string {
    const all = Buffer.concat(this.#chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString('utf8');
  }
}
