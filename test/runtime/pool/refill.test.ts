/**
 * @module
 * runtime/pool/refill.ts through the Pool: start() fills `size` generic containers and fails only
 * when every start failed; a failed background start pauses the refill for 1 s, doubled on each
 * failure up to 30 s, and a success resets it.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { nextBackoff, REFILL_BACKOFF_MAX_MS } from '../../../runtime/pool/refill.ts';
import { fnVersion, makePool, settle, useFakeClock, useRealClock } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

describe('start', () => {
  it('fills the pool with `size` generic containers', async () => {
    const { pool, source } = makePool({ size: 3, maxContainers: 4 });
    await pool.start();
    expect(source.launches.map((l) => l.request)).toEqual(Array(3).fill({ network: false, storeGeneration: 0 }));
    expect(pool.stats()).toMatchObject({ warm: 3, starting: 0, total: 3, size: 3, max: 4, lastError: undefined });
  });

  it('resolves when some starts failed, and reports each failure', async () => {
    const errors: unknown[] = [];
    const { pool, source } = makePool({ size: 3, maxContainers: 3, onError: (error) => errors.push(error) });
    source.outcomes.push('fail', 'start', 'fail');
    await pool.start();
    expect(pool.stats()).toMatchObject({ warm: 1, lastError: 'podman run failed' });
    expect(errors).toHaveLength(2);
  });

  it('rejects with the first cause when every start failed', async () => {
    const { pool, source } = makePool({ size: 2, maxContainers: 2 });
    source.outcome = 'hold';
    const started = pool.start();
    const [first, second] = [new Error('no rootfs'), new Error('no podman')];
    source.launches[1]!.fail(second);
    source.launches[0]!.fail(first);
    await expect(started).rejects.toBe(first);
  });

  it('resolves at once with size 0', async () => {
    const { pool, source } = makePool({ size: 0 });
    await pool.start();
    expect(source.launches).toHaveLength(0);
  });
});

describe('the refill', () => {
  it('replaces a generic container taken by a request, within maxContainers', async () => {
    const { pool, source } = makePool({ size: 2, maxContainers: 3 });
    await pool.start();
    await pool.acquire(fnVersion('a'));
    await settle();
    expect(pool.stats()).toMatchObject({ warm: 2, busy: 1, total: 3 });
    await pool.acquire(fnVersion('b'));
    await settle();
    expect(pool.stats()).toMatchObject({ warm: 1, busy: 2, total: 3 });
    expect(source.launches).toHaveLength(3);
  });

  it('backs off after failed starts: 1 s, doubling, at most 30 s', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 1 });
    source.outcome = 'fail';
    await pool.start().catch(() => {});
    const pauses: number[] = [];
    for (let i = 0; i < 7; i++) {
      const launches = source.launches.length;
      let waited = 0;
      while (source.launches.length === launches) {
        await vi.advanceTimersByTimeAsync(1000);
        waited += 1000;
      }
      pauses.push(waited);
    }
    expect(pauses).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  });

  it('waits the whole pause, not a millisecond less', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 1 });
    source.outcome = 'fail';
    await pool.start().catch(() => {});
    await vi.advanceTimersByTimeAsync(999);
    expect(source.launches).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(source.launches).toHaveLength(2);
  });

  it('starts over at 1 s after a success, and clears lastError', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 1 });
    source.outcomes.push('fail', 'fail', 'fail');
    await pool.start().catch(() => {});
    await vi.advanceTimersByTimeAsync(1000 + 2000 + 4000);
    expect(source.launches).toHaveLength(4);
    expect(pool.stats()).toMatchObject({ warm: 1, lastError: undefined });
    // The warm container dies; its replacement fails, and the pause is 1 s again.
    source.outcome = 'fail';
    source.launches[3]!.container!.die();
    await settle();
    expect(source.launches).toHaveLength(5);
    expect(pool.stats().lastError).toBe('podman run failed');
    await vi.advanceTimersByTimeAsync(1000);
    expect(source.launches).toHaveLength(6);
  });

  it('does not back off after a failed start that a request was waiting for', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 2 });
    await pool.start();
    source.outcome = 'fail';
    const error = await pool.acquire(fnVersion('fetcher', { network: true })).catch((e: unknown) => e);
    expect(pool.stats().lastError).toBe((error as Error).message);
    await pool.acquire(fnVersion('a')); // takes the warm one; the refill starts another at once
    expect(source.launches.map((l) => l.request.network)).toEqual([false, true, false]);
  });
});

describe('nextBackoff', () => {
  it('starts at 1 s, doubles, and stops at 30 s', () => {
    expect([0, 1000, 8000, 16_000, REFILL_BACKOFF_MAX_MS].map(nextBackoff)).toEqual([1000, 2000, 16_000, 30_000, 30_000]);
  });
});
