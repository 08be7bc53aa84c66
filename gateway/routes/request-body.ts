/**
 * @module
 * Delivers a request body to a function's stdin. The body is read from the client at network speed into
 * a queue bounded by FNIX_MAX_BODY, and fed to stdin as fast as the function reads it. Reading does not
 * wait for the function, so whether the body is complete, too large or abandoned is known whatever the
 * function does (and a function that reads slowly, or not at all, cannot stall the client's upload).
 */
import type { Invocation } from '../../runtime/invocation/invocation.ts';

/** How the request body ended. */
export type BodyOutcome = 'complete' | 'too_large' | 'aborted';

/** Starts delivering `body` to the invocation's stdin; resolves when the client's body has ended. */
export function deliverBody(body: ReadableStream<Uint8Array> | null, invocation: Invocation, maxBody: number): Promise<BodyOutcome> {
  if (!body) {
    invocation.stdin.end();
    return Promise.resolve('complete');
  }
  const queue: Uint8Array[] = [];
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
          queue.push(value);
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
      while (queue.length === 0 && !finished) await new Promise<void>((resolve) => (wake = resolve));
      const chunk = queue.shift();
      if (chunk === undefined) break;
      if (!invocation.stdin.write(chunk)) await new Promise((resolve) => invocation.stdin.once('drain', resolve));
    }
    if ((await outcome) === 'complete') invocation.stdin.end();
  })();

  return outcome;
}
