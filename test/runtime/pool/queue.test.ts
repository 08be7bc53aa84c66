/**
 * @module
 * runtime/pool/queue.ts through the Pool: requests beyond maxContainers wait in order, up to
 * queueTimeoutMs (then NO_CAPACITY), until their client goes away (INVOCATION_ABORTED), and no more
 * than maxQueue at once.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { fnVersion, makePool, settle, useFakeClock, useRealClock } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

const a = fnVersion('a');
const b = fnVersion('b');

/** A pool of one container, busy with `a`. */
async function fullPool(options: Parameters<typeof makePool>[0] = {}) {
  const made = makePool({ maxContainers: 1, queueTimeoutMs: 1000, ...options });
  const busy = await made.pool.acquire(a);
  return { ...made, busy };
}

describe('the wait queue', () => {
  it('serves a waiting request once a container is released, and counts the wait', async () => {
    const { pool, busy } = await fullPool();
    const waiting = pool.acquire(a);
    await settle();
    expect(pool.stats()).toMatchObject({ queued: 1, busy: 1 });
    await vi.advanceTimersByTimeAsync(400);
    pool.release(busy.container, true);
    const lease = await waiting;
    expect(lease.container).toBe(busy.container);
    expect(lease.timings.waitMs).toBe(400);
    expect(pool.stats()).toMatchObject({ queued: 0, busy: 1 });
  });

  it('serves waiters in the order they came', async () => {
    const { pool, busy } = await fullPool();
    const order: string[] = [];
    const first = pool.acquire(a).then((lease) => {
      order.push('first');
      return lease;
    });
    const second = pool.acquire(a).then((lease) => {
      order.push('second');
      return lease;
    });
    await settle();
    pool.release(busy.container, true);
    pool.release((await first).container, true);
    await second;
    expect(order).toEqual(['first', 'second']);
  });

  it('answers NO_CAPACITY with the bound and the timeout once queueTimeoutMs have passed', async () => {
    const { pool } = await fullPool();
    const failed = pool.acquire(b).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(999);
    expect(pool.stats().queued).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    const error = await failed;
    expect(error).toBeInstanceOf(FnixError);
    expect(error).toMatchObject({ code: 'NO_CAPACITY', details: { maxContainers: 1, queueTimeoutMs: 1000 } });
    expect(pool.stats().queued).toBe(0);
  });

  it('answers NO_CAPACITY at once, with the count, when maxQueue requests are waiting', async () => {
    const { pool } = await fullPool({ maxQueue: 2 });
    const waiting = [pool.acquire(b), pool.acquire(b)].map((p) => p.catch((e: unknown) => e));
    const error = await pool.acquire(b).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'NO_CAPACITY', details: { maxContainers: 1, queued: 2 } });
    expect(pool.stats().queued).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(await Promise.all(waiting)).toMatchObject([{ code: 'NO_CAPACITY' }, { code: 'NO_CAPACITY' }]);
  });

  it('answers INVOCATION_ABORTED when the client goes away while it waits', async () => {
    const { pool, busy } = await fullPool();
    const controller = new AbortController();
    const failed = pool.acquire(b, { signal: controller.signal }).catch((e: unknown) => e);
    await settle();
    controller.abort();
    expect(await failed).toMatchObject({ code: 'INVOCATION_ABORTED' });
    expect(pool.stats().queued).toBe(0);
    expect(vi.getTimerCount()).toBe(0); // its deadline went with it
    pool.release(busy.container, true);
    expect(pool.stats()).toMatchObject({ idle: 1, busy: 0 });
  });

  it('rejects with the abort reason when it is a FnixError', async () => {
    const { pool } = await fullPool();
    const controller = new AbortController();
    const failed = pool.acquire(b, { signal: controller.signal }).catch((e: unknown) => e);
    const reason = new FnixError('SHUTTING_DOWN', 'going');
    controller.abort(reason);
    expect(await failed).toBe(reason);
  });

  it('does not queue a request whose signal has already aborted', async () => {
    const { pool } = await fullPool();
    const error = await pool.acquire(b, { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'INVOCATION_ABORTED' });
    expect(pool.stats().queued).toBe(0);
  });

  it('does not queue a request when a container can be had', async () => {
    const { pool } = makePool({ maxContainers: 1, maxQueue: 0 });
    const controller = new AbortController();
    const lease = await pool.acquire(a, { signal: controller.signal });
    controller.abort();
    expect(pool.stats()).toMatchObject({ busy: 1, queued: 0 });
    expect(lease.coldStart).toBe(true);
  });
});
