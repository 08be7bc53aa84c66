/**
 * @module
 * Shutting the pool down in stages: waiting requests and warm or idle containers go at once; busy
 * containers get a grace period to finish their invocations; past it, the invocations are stopped as
 * such (SHUTTING_DOWN) and get the kill deadline; then whatever is still busy is removed, and the
 * source drained once the starts under way have ended.
 */
import { FnixError } from '../errors.ts';
import type { Container } from '../container/container.ts';
import { KILL_DEADLINE_MS } from '../invocation/invocation.ts';
import type { Inventory } from './inventory.ts';
import type { ContainerSource } from './options.ts';

/** The error of a request the closing pool refuses or stops. */
export function shuttingDown(): FnixError {
  return new FnixError('SHUTTING_DOWN', 'fnix is shutting down and accepts no new invocations');
}

/** What {@link shutDown} stops. */
export interface ShutDownOptions {
  inventory: Inventory;
  /** The waiting requests. */
  queue: { rejectAll: (makeError: () => unknown) => void };
  /** The refill, whose pending retry is cancelled. */
  refill: { stop: () => void };
  source: ContainerSource;
  /** How long invocations may run on before they are stopped. */
  graceMs: number;
  remove: (container: Container, reason: string) => void;
}

/** Empties a pool that refuses new work; resolves when its source is drained. */
export async function shutDown({ inventory, queue, refill, source, graceMs, remove }: ShutDownOptions): Promise<void> {
  refill.stop();
  queue.rejectAll(shuttingDown);
  for (const container of [...inventory.generic.splice(0), ...inventory.idle.takeAll()]) remove(container, 'pool closed');
  // Serve instances are stopped before the pool closes (runtime.ts); any still held goes now.
  for (const container of inventory.held) remove(container, 'pool closed');
  inventory.held.clear();
  const { busy } = inventory;
  await busy.whenEmpty(graceMs);
  // Past the grace period, invocations are stopped as such (SHUTTING_DOWN), then their containers go.
  for (const container of busy) container.stopInvocation('shutdown');
  await busy.whenEmpty(KILL_DEADLINE_MS + 100);
  for (const container of busy) remove(container, 'pool closed');
  busy.clear();
  await Promise.allSettled([...inventory.starting].map((s) => s.promise));
  await source.drain();
}
