/**
 * @module
 * Turning a plan into a lease: taking the container reserved for a request, waiting for it to start
 * if it is a new one, specialising it unless it already serves the function, and timing each phase.
 */
import { FnixError } from '../errors.ts';
import type { Container } from '../container/container.ts';
import type { FunctionVersion } from '../functions/version.ts';
import type { Inventory } from './inventory.ts';
import type { Plan } from './plan.ts';
import { shuttingDown } from './shutdown.ts';

/** A container handed to one invocation; give it back with Pool.release. */
export interface Lease {
  container: Container;
  /** True when no warm container was available, so one was started for this request. */
  coldStart: boolean;
  /** Where the time went, in ms. */
  timings: { waitMs: number; startMs: number; specializeMs: number };
}

/** The parts of the pool a lease is taken from. */
export interface LeaseContext {
  inventory: Inventory;
  isClosed: () => boolean;
  recordStartFailure: (error: unknown) => void;
  /** Offers capacity that came free to the waiting requests (and refills). */
  pump: () => void;
  /** Refills the generic containers. */
  refill: () => void;
  remove: (container: Container, reason: string) => void;
}

/** What {@link takeLease} takes. */
export interface TakeLeaseOptions {
  fn: FunctionVersion;
  /** What the planner reserved for the request, once any hand-off is over. */
  plan: Exclude<Plan, { kind: 'handoff' }>;
  /** When the request asked, from performance.now(). */
  begin: number;
  context: LeaseContext;
}

/**
 * Takes the container `plan` reserved, busy from now on and specialised for `fn`.
 * @throws the start's error, SHUTTING_DOWN when the pool closed during the start, or
 * CONTAINER_START_FAILED when specialising failed.
 */
export async function takeLease({ fn, plan, begin, context }: TakeLeaseOptions): Promise<Lease> {
  const waitMs = performance.now() - begin;
  let container: Container;
  let startMs = 0;
  if (plan.kind === 'start') {
    try {
      container = await plan.starting.promise;
    } catch (error) {
      context.inventory.starting.delete(plan.starting);
      context.recordStartFailure(error);
      context.pump(); // its place under maxContainers is free again
      throw error;
    }
    context.inventory.starting.delete(plan.starting);
    startMs = performance.now() - begin - waitMs;
    if (context.isClosed()) {
      context.remove(container, 'pool closed');
      throw shuttingDown();
    }
  } else {
    container = plan.container;
  }
  context.inventory.busy.add(container);
  const specializeBegin = performance.now();
  if (plan.kind !== 'idle') {
    try {
      await container.specialize(fn);
    } catch (error) {
      context.inventory.busy.delete(container);
      context.remove(container, 'specialisation failed');
      context.pump();
      throw new FnixError('CONTAINER_START_FAILED', `preparing a container for ${fn.key} failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  context.refill();
  return {
    container,
    coldStart: plan.kind === 'start',
    timings: { waitMs, startMs, specializeMs: performance.now() - specializeBegin },
  };
}
