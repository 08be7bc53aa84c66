/**
 * @module
 * Delivers a request body to a function's stdin. The body is read from the client at network speed into
 * a queue bounded by FNIX_MAX_BODY, and fed to stdin as fast as the function reads it. Reading does not
 * wait for the function, so whether the body is complete, too large or abandoned is known whatever the
 * function does (and a function that reads slowly, or not at all, cannot stall the client's upload).
 */
import type { Invocation } from '../../runtime/invocation/invocation.ts';

/**
 * Chunks smaller than this are copied together into blocks before they are queued: a chunked body of
 * one-byte chunks would otherwise queue a million views for a megabyte, each costing far more memory
 * than its byte, to a function that does not read them.
 */
const SMALL = 16 * 1024;
const BLOCK = 64 * 1024;

/** How the request body ended. */
export type BodyOutcome = 'complete' | 'too_large' | 'aborted';

/** Starts delivering `body` to the invocation's stdin; resolves when the client's body has ended. */
export function deliverBody(body: ReadableStream<Uint8Array> | null, invocation: Invocation, maxBody: number): Promise<BodyOutcome> {
  if (!body) {
    invocation.stdin.end();
    return Promise.resolve('complete');
  }
  const queue: Uint8Array[] = [];
  // The block that small chunks are copied into, and how much of it is used.
  let block: Buffer | undefined;
  let used = 0;
  const flushBlock = () => {
    if (!block || used === 0) return;
    // A partial block is copied out, so that a few bytes never hold on to a whole block.
    queue.push(used === block.length ? block : Buffer.from(block.subarray(0, used)));
    if (used === block.length) block = undefined;
    used = 0;
  };
  const enqueue = (chunk: Uint8Array) => {
    if (chunk.length >= SMALL) {
      flushBlock();
      queue.push(chunk);
      return;
    }
    if (block && used + chunk.length > block.length) flushBlock();
    block ??= Buffer.allocUnsafe(BLOCK);
    block.set(chunk, used);
    used += chunk.length;
  };
  let finished = false;
  let wake: (() => void) | undefined;
  const signal = () => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };

  const outcome = (async (): Promise<BodyOutcome> => {
    const reader = body.getReader();
    let total = 0;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return 'complete';
        total += value.length;
        if (total > maxBody) return 'too_large';
        // Once the function has ended, the rest is only counted (for the 413), not kept.
        if (!invocation.finished) {
          enqueue(value);
          signal();
        }
      }
    } catch {
      return 'aborted'; // the client went away mid-body; the request signal kills the invocation
    } finally {
      finished = true;
      signal();
      reader.cancel().catch(() => {});
    }
  })();

  void (async function feedStdin() {
    for (;;) {
      // A block still being filled goes as it is once stdin has taken everything before it: coalescing
      // never delays bytes that the function could read now, and stdin never holds many tiny writes.
      while (queue.length === 0 && !(used > 0 && invocation.stdin.writableLength === 0) && !finished) {
        await new Promise<void>((resolve) => (wake = resolve));
      }
      if (queue.length === 0) flushBlock();
      const chunk = queue.shift();
      if (chunk === undefined) break;
      if (!invocation.stdin.write(chunk, signal)) await new Promise((resolve) => invocation.stdin.once('drain', resolve));
    }
    if ((await outcome) === 'complete') invocation.stdin.end();
  })();

  return outcome;
}
