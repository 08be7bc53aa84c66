/**
 * @module
 * runtime/pool/shutdown.ts through the Pool: close() refuses new work at once, gives busy containers
 * a grace period, then stops their invocations (SHUTTING_DOWN) and, past the kill deadline, removes
 * them; it resolves as soon as the last busy container is back.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KILL_DEADLINE_MS } from '../../../runtime/invocation/invocation.ts';
import { fake, fnVersion, makePool, settle, useFakeClock, useRealClock } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

const a = fnVersion('a');

/** Tracks whether `promise` has settled. */
function track(promise: Promise<unknown>): { done: boolean } {
  const state = { done: false };
  void promise.then(() => {
    state.done = true;
  });
  return state;
}

describe('close', () => {
  it('removes warm and idle containers at once, and refuses new requests with SHUTTING_DOWN', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 3 });
    await pool.start();
    const idle = await pool.acquire(a);
    await settle();
    const busy = await pool.acquire(fnVersion('b'));
    await settle();
    pool.release(idle.container, true);
    expect(pool.stats()).toMatchObject({ warm: 1, idle: 1, busy: 1 });
    const closed = pool.close(1000);
    expect(source.removed.map((r) => r.reason)).toEqual(['pool closed', 'pool closed']);
    expect(source.removed.map((r) => r.container)).toContain(fake(idle.container));
    expect(pool.stats()).toMatchObject({ warm: 0, idle: 0, busy: 1, total: 1 });
    await expect(pool.acquire(a)).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    pool.release(busy.container, true);
    await closed;
    expect(source.removed.map((r) => r.container)).toContain(fake(busy.container));
    expect(source.launches).toHaveLength(3);
  });

  it('ends waiting requests with SHUTTING_DOWN', async () => {
    const { pool } = makePool({ maxContainers: 1 });
    await pool.acquire(a);
    const queued = pool.acquire(fnVersion('b')).catch((e: unknown) => e);
    await settle();
    void pool.close(0);
    expect(await queued).toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(pool.stats().queued).toBe(0);
  });

  it('resolves as soon as the last busy container is released within the grace period', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const lease = await pool.acquire(a);
    const closed = pool.close(10_000);
    const state = track(closed);
    await vi.advanceTimersByTimeAsync(300);
    expect(state.done).toBe(false);
    pool.release(lease.container, true);
    await settle();
    expect(state.done).toBe(true);
    expect(fake(lease.container).stopInvocation).not.toHaveBeenCalled();
    expect(source.reasons).toEqual(['pool closed']);
    expect(source.drain).toHaveBeenCalledOnce();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('stops invocations still running after the grace period with SHUTTING_DOWN, then removes their containers', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const lease = await pool.acquire(a);
    const stop = fake(lease.container).stopInvocation;
    const state = track(pool.close(1000));
    await vi.advanceTimersByTimeAsync(999);
    expect(stop).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(stop).toHaveBeenCalledWith('shutdown');
    await vi.advanceTimersByTimeAsync(KILL_DEADLINE_MS + 99);
    expect(source.removed).toEqual([]);
    expect(state.done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(source.removed).toEqual([{ container: fake(lease.container), reason: 'pool closed' }]);
    expect(pool.stats()).toMatchObject({ busy: 0, total: 0 });
    expect(state.done).toBe(true);
    expect(source.drain).toHaveBeenCalledOnce();
  });

  it('resolves once the stopped invocations give their containers back, before the kill deadline', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const lease = await pool.acquire(a);
    fake(lease.container).stopInvocation.mockImplementation(() => {
      setTimeout(() => pool.release(lease.container, false), 10);
    });
    const state = track(pool.close(0));
    await vi.advanceTimersByTimeAsync(10);
    expect(state.done).toBe(true);
    expect(source.reasons).toEqual(['not reusable']);
  });

  it('stops busy containers at once with a grace period of 0', async () => {
    const { pool } = makePool({ maxContainers: 2 });
    const lease = await pool.acquire(a);
    void pool.close(0);
    await Promise.resolve();
    await Promise.resolve();
    expect(fake(lease.container).stopInvocation).toHaveBeenCalledWith('shutdown');
  });

  it('waits for starts under way, removes what they bring, and fails their requests with SHUTTING_DOWN', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 2 });
    source.outcome = 'hold';
    void pool.start();
    const leased = pool.acquire(fnVersion('fetcher', { network: true })).catch((e: unknown) => e);
    const state = track(pool.close(0));
    await settle();
    expect(state.done).toBe(false);
    for (const launch of source.launches) launch.start();
    await settle();
    expect(await leased).toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(source.reasons).toEqual(['stale', 'pool closed']);
    expect(state.done).toBe(true);
  });

  it('does not refill while closing, nor retry a failed start', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 1 });
    source.outcome = 'fail';
    await pool.start().catch(() => {});
    await pool.close(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(source.launches).toHaveLength(1);
  });
});
