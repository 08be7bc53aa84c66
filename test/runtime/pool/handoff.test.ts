/**
 * @module
 * runtime/pool/handoff.ts through the Pool: a request for the function of a finishing container
 * waits up to 50 ms for it, rather than taking or starting another.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HANDOFF_WAIT_MS } from '../../../runtime/pool/handoff.ts';
import { fake, fnVersion, makePool, settle, useFakeClock, useRealClock } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

const a = fnVersion('a');

describe('the hand-off', () => {
  it('hands a finishing container to a request of its function, keeping it busy', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const first = await pool.acquire(a);
    pool.finishing(first.container);
    const second = pool.acquire(a);
    await vi.advanceTimersByTimeAsync(HANDOFF_WAIT_MS - 1);
    pool.release(first.container, true);
    const lease = await second;
    expect(lease.container).toBe(first.container);
    expect(lease.coldStart).toBe(false);
    expect(fake(lease.container).specialize).toHaveBeenCalledTimes(1);
    expect(source.launches).toHaveLength(1);
    expect(pool.stats()).toMatchObject({ busy: 1, idle: 0 });
  });

  it('claims the finishing container again every 50 ms until it is released', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const first = await pool.acquire(a);
    pool.finishing(first.container);
    const second = pool.acquire(a);
    await vi.advanceTimersByTimeAsync(HANDOFF_WAIT_MS * 10);
    expect(source.launches).toHaveLength(1);
    pool.release(first.container, true);
    expect((await second).container).toBe(first.container);
  });

  it('takes an idle container of its function that came free meanwhile, at the end of a 50 ms round', async () => {
    const { pool, source } = makePool({ maxContainers: 3 });
    const finishing = await pool.acquire(a);
    const other = await pool.acquire(a);
    pool.finishing(finishing.container);
    const waiting = pool.acquire(a);
    await settle();
    pool.release(other.container, true);
    await vi.advanceTimersByTimeAsync(HANDOFF_WAIT_MS - 1);
    expect(pool.stats()).toMatchObject({ idle: 1 });
    await vi.advanceTimersByTimeAsync(1);
    expect((await waiting).container).toBe(other.container);
    pool.release(finishing.container, true); // no longer claimed: it goes idle
    expect(pool.stats()).toMatchObject({ idle: 1, busy: 1 });
    expect(source.launches).toHaveLength(2);
  });

  it('takes another way when the finishing container is not reusable', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const first = await pool.acquire(a);
    pool.finishing(first.container);
    const second = pool.acquire(a);
    await settle();
    pool.release(first.container, false);
    const lease = await second;
    expect(lease.container).not.toBe(first.container);
    expect(source.reasons).toEqual(['not reusable']);
    expect(source.launches).toHaveLength(2);
  });

  it('is not offered to a request of another function', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const first = await pool.acquire(a);
    pool.finishing(first.container);
    await pool.acquire(fnVersion('b'));
    expect(source.launches).toHaveLength(2);
  });

  it('ignores finishing() for a container that is not busy', async () => {
    const { pool } = makePool({ maxContainers: 1 });
    const first = await pool.acquire(a);
    pool.release(first.container, true);
    pool.finishing(first.container); // idle now: nothing to wait for
    const second = await pool.acquire(a);
    expect(second.container).toBe(first.container);
  });
});
