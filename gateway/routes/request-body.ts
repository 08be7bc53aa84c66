/**
 * @module
 * Delivers a request body to a function's stdin. The body is read from the client at network speed into
 * a queue bounded by FNIX_MAX_BODY, and fed to stdin as fast as the function reads it. Reading does not
 * wait for the function, so whether the body is complete, too large or abandoned is known whatever the
 * function does (and a function that reads slowly, or not at all, cannot stall the client's upload).
 *
 * It reads Node's request stream itself rather than the fetch Request's body: a web ReadableStream over
 * it costs a Request, a stream and a promise per chunk, which on the warm path was a tenth of the
 * gateway's time per invocation (docs/performance.md).
 */
import type { IncomingMessage } from 'node:http';
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

const COMPLETE: Promise<BodyOutcome> = Promise.resolve('complete');
const ABORTED: Promise<BodyOutcome> = Promise.resolve('aborted');

/** True when the request carries no body at all (no Content-Length above 0, no Transfer-Encoding). */
function hasNoBody(incoming: IncomingMessage): boolean {
  const { headers } = incoming;
  return headers['transfer-encoding'] === undefined && (headers['content-length'] === undefined || headers['content-length'] === '0');
}

/**
 * Starts delivering the request's body to the invocation's stdin; resolves when the client's body has
 * ended. `received` is told the body bytes that came, once it has (not for a request without a body).
 */
export function deliverBody(incoming: IncomingMessage, invocation: Invocation, maxBody: number, received?: (bytes: number) => void): Promise<BodyOutcome> {
  if (hasNoBody(incoming) || incoming.readableEnded) {
    invocation.stdin.end();
    // The parser still ends the (empty) stream; nothing needs to wait for it.
    incoming.resume();
    return COMPLETE;
  }
  // A client gone before the body was listened to (while a container started, say): the stream's
  // 'close' has been and gone, so no listener added now would ever hear of it.
  if (incoming.destroyed) return ABORTED;
  const queue: Uint8Array[] = [];
  const length = Number(incoming.headers['content-length']);
  const declared = Number.isSafeInteger(length) && length > 0 ? length : Number.POSITIVE_INFINITY;
  // Body bytes received so far, this chunk's included.
  let total = 0;
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
  const enqueue = (chunk: Buffer) => {
    if (chunk.length >= SMALL) {
      flushBlock();
      queue.push(chunk);
      return;
    }
    if (block && used + chunk.length > block.length) flushBlock();
    // A body of known length below a block gets a block of its size: no 64 KiB for a 1 KiB body.
    block ??= Buffer.allocUnsafe(Math.max(chunk.length, Math.min(BLOCK, declared - total + chunk.length)));
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

  const outcome = new Promise<BodyOutcome>((resolve) => {
    const settle = (result: BodyOutcome) => {
      if (finished) return;
      finished = true;
      incoming.off('data', onData);
      incoming.off('end', onEnd);
      incoming.off('close', onClose);
      incoming.off('error', onClose);
      received?.(total);
      // What the client still sends (after a 413, say) is read and dropped, so the connection can be reused.
      if (result !== 'aborted') incoming.resume();
      signal();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > maxBody) return settle('too_large');
      // Once the function has ended, the rest is only counted (for the 413), not kept.
      if (!invocation.finished) {
        enqueue(chunk);
        signal();
      }
    };
    const onEnd = () => settle('complete');
    // The client went away mid-body; the request's signal kills the invocation.
    const onClose = () => settle('aborted');
    incoming.on('data', onData);
    incoming.on('end', onEnd);
    incoming.on('close', onClose);
    incoming.on('error', onClose);
  });

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
