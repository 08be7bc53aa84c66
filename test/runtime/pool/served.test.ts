/**
 * @module
 * runtime/pool/served.ts and generation.ts through the Pool: serve() and retire() remove the idle
 * containers of versions no longer served, and markStoreChanged() replaces the generic containers.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fake, fnVersion, makePool, settle, useFakeClock, useRealClock } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

const a = fnVersion('a');
const b = fnVersion('b');

/** A pool with one idle container for each of a and b. */
async function poolWithIdle() {
  const made = makePool({ maxContainers: 3 });
  const leases = [await made.pool.acquire(a), await made.pool.acquire(b)];
  for (const lease of leases) made.pool.release(lease.container, true);
  return { ...made, idleA: fake(leases[0]!.container), idleB: fake(leases[1]!.container) };
}

describe('serve and retire', () => {
  it('serve() removes the idle containers of every other version, and keeps the rest', async () => {
    const { pool, source, idleA, idleB } = await poolWithIdle();
    pool.serve([a.key]);
    expect(source.removed).toEqual([{ container: idleB, reason: 'b@1 retired' }]);
    expect(pool.stats().idle).toBe(1);
    expect((await pool.acquire(a)).container).toBe(idleA);
  });

  it('retire() removes the idle containers of one version', async () => {
    const { pool, source, idleA } = await poolWithIdle();
    pool.retire(a.key);
    expect(source.removed).toEqual([{ container: idleA, reason: 'a@1 retired' }]);
    expect(pool.stats().idle).toBe(1);
  });

  it('removes a busy container of a version no longer served when it is released', async () => {
    const { pool, source } = makePool({ maxContainers: 3 });
    const lease = await pool.acquire(a);
    pool.serve([b.key]);
    expect(pool.stats().busy).toBe(1);
    pool.release(lease.container, true);
    expect(source.reasons).toEqual(['a@1 retired']);
  });

  it('keeps every version until a deployment says what is served', async () => {
    const { pool, source } = makePool({ maxContainers: 3 });
    const lease = await pool.acquire(a);
    pool.retire(b.key);
    pool.release(lease.container, true);
    expect(source.removed).toEqual([]);
    expect(pool.stats().idle).toBe(1);
  });

  it('removes, after retire(), a released container of the retired version', async () => {
    const { pool, source } = makePool({ maxContainers: 3 });
    pool.serve([a.key, b.key]);
    const lease = await pool.acquire(a);
    pool.retire(a.key);
    pool.release(lease.container, true);
    expect(source.reasons).toEqual(['a@1 retired']);
  });
});

describe('markStoreChanged', () => {
  it('replaces the generic containers with ones of the new store generation', async () => {
    const { pool, source } = makePool({ size: 2, maxContainers: 3 });
    await pool.start();
    pool.markStoreChanged();
    expect(source.reasons).toEqual(['store changed', 'store changed']);
    expect(source.launches.map((l) => l.request.storeGeneration)).toEqual([0, 0, 1, 1]);
    await settle();
    expect(pool.stats()).toMatchObject({ warm: 2, total: 2 });
  });

  it('removes a generic container of an older generation that was still starting', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 2 });
    source.outcome = 'hold';
    void pool.start();
    pool.markStoreChanged();
    expect(source.launches).toHaveLength(1); // the one starting counts towards size
    const stale = source.launches[0]!.start();
    await settle();
    expect(source.removed).toEqual([{ container: stale, reason: 'stale' }]);
    expect(source.launches.map((l) => l.request.storeGeneration)).toEqual([0, 1]);
  });

  it('leaves specialised containers alone', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const lease = await pool.acquire(a);
    pool.release(lease.container, true);
    pool.markStoreChanged();
    expect(source.removed).toEqual([]);
    expect((await pool.acquire(a)).container).toBe(lease.container);
  });
});
