/**
 * @module
 * The lease hand-off. A busy container whose invocation has ended comes back to the pool within a
 * millisecond or so; a request for the same function arriving in between claims it and waits for it
 * (up to {@link HANDOFF_WAIT_MS}), rather than taking, or starting, another container.
 */
import type { Container } from '../container/container.ts';

/** How long a request waits for a finishing container of its function before taking another. */
export const HANDOFF_WAIT_MS = 50;

/** A busy container whose invocation has ended. */
export interface Handoff {
  container: Container;
  /** A request is waiting for it. */
  claimed: boolean;
  /** It was handed to the request, and stays busy for it. */
  handed: boolean;
  settle: (container: Container | undefined) => void;
  promise: Promise<Container | undefined>;
}

/** The finishing containers, each possibly claimed by one waiting request. */
export class Handoffs {
  readonly #finishing = new Map<Container, Handoff>();

  /** Says that `container`'s invocation has ended and that it will be released shortly. */
  expect(container: Container): void {
    if (this.#finishing.has(container)) return;
    let settle!: (container: Container | undefined) => void;
    const promise = new Promise<Container | undefined>((resolve) => {
      settle = resolve;
    });
    this.#finishing.set(container, { container, claimed: false, handed: false, settle, promise });
  }

  /** Claims a finishing container specialised for `key` that no other request claimed. */
  claim(key: string): Handoff | undefined {
    for (const handoff of this.#finishing.values()) {
      if (!handoff.claimed && handoff.container.specializedFor === key) {
        handoff.claimed = true;
        return handoff;
      }
    }
    return undefined;
  }

  /**
   * Ends `container`'s hand-off as it is released. Returns true when it went to the request that
   * claimed it, which `canHand()` (asked only when a request did) allows; the caller then keeps it busy.
   */
  release(container: Container, canHand: () => boolean): boolean {
    const handoff = this.#finishing.get(container);
    this.#finishing.delete(container);
    if (handoff?.claimed && canHand()) {
      handoff.handed = true;
      handoff.settle(container);
      return true;
    }
    handoff?.settle(undefined);
    return false;
  }
}

/** Waits briefly for a claimed container; undefined when it did not come back in time, or not reusable. */
export async function awaitHandoff(handoff: Handoff): Promise<Container | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), HANDOFF_WAIT_MS);
  });
  const container = await Promise.race([handoff.promise, late]);
  clearTimeout(timer);
  if (container) return container;
  handoff.claimed = false; // if it comes back later, it goes to the idle set as usual
  return handoff.handed ? handoff.container : undefined;
}
