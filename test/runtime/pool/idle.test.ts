/**
 * @module
 * The idle containers (runtime/pool/idle-set.ts) through the Pool: one idle for idleTtlMs is
 * removed and replaced by a generic one, and one that dies while warm or idle is forgotten.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { fake, fnVersion, makePool, settle, useFakeClock, useRealClock } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

describe('idle containers', () => {
  it('are removed once idle for idleTtlMs, and the pool refills', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 1, idleTtlMs: 1000 });
    await pool.start();
    const lease = await pool.acquire(fnVersion('a'));
    pool.release(lease.container, true);
    expect(pool.stats()).toMatchObject({ warm: 0, idle: 1 });
    await vi.advanceTimersByTimeAsync(1000);
    expect(pool.stats().idle).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(source.removed).toEqual([{ container: fake(lease.container), reason: 'idle container expired' }]);
    expect(pool.stats()).toMatchObject({ warm: 1, idle: 0, total: 1 });
  });

  it('count their idle time from their last release', async () => {
    const { pool } = makePool({ maxContainers: 1, idleTtlMs: 1000 });
    const a = fnVersion('a');
    pool.release((await pool.acquire(a)).container, true);
    await vi.advanceTimersByTimeAsync(800);
    pool.release((await pool.acquire(a)).container, true);
    await vi.advanceTimersByTimeAsync(800);
    expect(pool.stats().idle).toBe(1);
    await vi.advanceTimersByTimeAsync(201);
    expect(pool.stats().idle).toBe(0);
  });

  it('are forgotten, and replaced, when they die', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 2 });
    await pool.start();
    const lease = await pool.acquire(fnVersion('a'));
    pool.release(lease.container, true);
    await settle();
    expect(pool.stats()).toMatchObject({ warm: 1, idle: 1 });
    fake(lease.container).die();
    source.launches[1]!.container!.die();
    await settle();
    expect(source.reasons).toEqual(['exited while idle', 'exited while idle']);
    expect(pool.stats()).toMatchObject({ warm: 1, idle: 0, total: 1 });
  });

  it('are not forgotten when they die busy: the release retires them', async () => {
    const { pool, source } = makePool({ maxContainers: 1 });
    const lease = await pool.acquire(fnVersion('a'));
    fake(lease.container).die();
    await settle();
    expect(pool.stats().busy).toBe(1);
    pool.release(lease.container, true);
    expect(source.reasons).toEqual(['exited']); // not alive, so not kept
  });
});
