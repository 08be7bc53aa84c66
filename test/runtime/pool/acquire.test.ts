/**
 * @module
 * runtime/pool/plan.ts and lease.ts through the Pool: which container a request gets (idle of its
 * version, warm generic, a start under way, a new start), what making room evicts, and what a failed
 * start or specialisation leaves.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { fake, fnVersion, makePool, settle, useFakeClock, useRealClock } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

const a = fnVersion('a');
const b = fnVersion('b');
const c = fnVersion('c');

describe('Pool.acquire', () => {
  it('specialises a warm generic container, then refills', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 2 });
    await pool.start();
    const lease = await pool.acquire(a);
    expect(lease.coldStart).toBe(false);
    expect(lease.container).toBe(source.launches[0]!.container);
    expect(fake(lease.container).specialize).toHaveBeenCalledWith(a);
    expect(source.launches).toHaveLength(2);
    await settle();
    expect(pool.stats()).toMatchObject({ warm: 1, busy: 1, total: 2 });
  });

  it('reuses an idle container of the same version, without specialising it again', async () => {
    const { pool, source } = makePool();
    const first = await pool.acquire(a);
    pool.release(first.container, true);
    expect(pool.stats()).toMatchObject({ idle: 1, busy: 0 });
    const second = await pool.acquire(a);
    expect(second.container).toBe(first.container);
    expect(second.coldStart).toBe(false);
    expect(fake(second.container).specialize).toHaveBeenCalledTimes(1);
    expect(source.launches).toHaveLength(1);
  });

  it('never reuses a container across function versions', async () => {
    const { pool, source } = makePool();
    const first = await pool.acquire(a);
    pool.release(first.container, true);
    const other = await pool.acquire(fnVersion('a', { version: '2' }));
    expect(other.container).not.toBe(first.container);
    expect(other.coldStart).toBe(true);
    expect(source.launches).toHaveLength(2);
  });

  it('starts a container when none is warm, and times the start', async () => {
    const { pool, source } = makePool();
    source.outcome = 'hold';
    const leased = pool.acquire(a);
    await settle();
    expect(pool.stats()).toMatchObject({ starting: 1, total: 1 });
    await vi.advanceTimersByTimeAsync(300);
    source.launches[0]!.start();
    const lease = await leased;
    expect(lease.coldStart).toBe(true);
    expect(lease.timings).toMatchObject({ waitMs: 0, startMs: 300 });
    expect(pool.stats()).toMatchObject({ starting: 0, busy: 1 });
  });

  it('takes over a generic container the refill is starting, rather than starting another', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 1 });
    source.outcome = 'hold';
    const started = pool.start();
    const leased = pool.acquire(a);
    expect(source.launches).toHaveLength(1);
    source.launches[0]!.start();
    expect((await leased).coldStart).toBe(true);
    await started;
    expect(pool.stats()).toMatchObject({ warm: 0, busy: 1, starting: 0, total: 1 });
  });

  it('gives a network function a container of its own, never a warm generic one', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 2 });
    await pool.start();
    const lease = await pool.acquire(fnVersion('fetcher', { network: true }));
    expect(lease.coldStart).toBe(true);
    expect(source.launches.map((l) => l.request.network)).toEqual([false, true]);
    expect(lease.container.network).toBe(true);
    expect(pool.stats()).toMatchObject({ warm: 1, busy: 1 });
  });

  it('evicts the least recently used idle container when at maxContainers', async () => {
    const { pool, source } = makePool({ maxContainers: 2 });
    const leaseA = await pool.acquire(a);
    const leaseB = await pool.acquire(b);
    pool.release(leaseA.container, true);
    pool.release(leaseB.container, true);
    // a is used again, so b is now the least recently used.
    pool.release((await pool.acquire(a)).container, true);
    const leaseC = await pool.acquire(c);
    expect(source.removed).toEqual([{ container: fake(leaseB.container), reason: 'idle container evicted' }]);
    expect(leaseC.coldStart).toBe(true);
    expect(pool.stats()).toMatchObject({ idle: 1, busy: 1, total: 2 });
  });

  it('removes a warm generic container to make room for a network function', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 1 });
    await pool.start();
    const lease = await pool.acquire(fnVersion('fetcher', { network: true }));
    expect(source.reasons).toEqual(['room for another function']);
    expect(lease.container.network).toBe(true);
  });

  it('rejects with the start error, reports it, and frees the place', async () => {
    const errors: unknown[] = [];
    const { pool, source } = makePool({ maxContainers: 1, onError: (error) => errors.push(error) });
    source.outcome = 'fail';
    const error = await pool.acquire(a).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(errors).toEqual([error]);
    expect(pool.stats()).toMatchObject({ starting: 0, total: 0, lastError: 'podman run failed' });
    source.outcome = 'start';
    expect((await pool.acquire(a)).coldStart).toBe(true);
    expect(pool.stats().lastError).toBeUndefined();
  });

  it('turns a failed specialisation into CONTAINER_START_FAILED and removes the container', async () => {
    const { pool, source } = makePool({ size: 1, maxContainers: 1 });
    await pool.start();
    const cause = new Error('link failed');
    source.launches[0]!.container!.specialize.mockRejectedValueOnce(cause);
    const error = await pool.acquire(a).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FnixError);
    expect(error).toMatchObject({ code: 'CONTAINER_START_FAILED', cause });
    expect(source.reasons).toEqual(['specialisation failed']);
    expect(pool.stats()).toMatchObject({ busy: 0 });
    await settle();
    expect(pool.stats()).toMatchObject({ warm: 1, total: 1 }); // refilled
  });

  it('retires a released container that is not reusable, or dead', async () => {
    const { pool, source } = makePool();
    const first = await pool.acquire(a);
    const second = await pool.acquire(b);
    pool.release(first.container, false);
    fake(second.container).isAlive = false;
    pool.release(second.container, true);
    expect(source.reasons).toEqual(['not reusable', 'exited']);
    expect(pool.stats()).toMatchObject({ idle: 0, busy: 0, total: 0 });
  });

  it('ignores the release of a container it does not hold', async () => {
    const { pool, source } = makePool();
    const lease = await pool.acquire(a);
    pool.release(lease.container, true);
    pool.release(lease.container, true);
    expect(pool.stats()).toMatchObject({ idle: 1, total: 1 });
    expect(source.removed).toEqual([]);
  });

  it('counts a container held by a serve instance as serving, within maxContainers, and removes it on release', async () => {
    const { pool, source } = makePool({ size: 0, maxContainers: 1 });
    const lease = await pool.acquire(a);
    pool.hold(lease.container);
    expect(pool.stats()).toMatchObject({ busy: 0, serving: 1, total: 1 });
    // Held, it still takes its place under maxContainers: another request waits for it.
    const waiting = pool.acquire(b);
    await settle();
    expect(source.launches).toHaveLength(1);
    pool.release(lease.container, true);
    expect(source.removed).toEqual([{ container: fake(lease.container), reason: 'its serve instance ended' }]);
    expect(pool.stats()).toMatchObject({ serving: 0 });
    await waiting;
  });
});
