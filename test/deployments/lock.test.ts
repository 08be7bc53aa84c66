/**
 * @module
 * The deploy lock (deployments/lock.ts) on a fake clock: one holder at a time, waiters in order, told
 * who holds it, a bounded wait that fails with DEPLOY_IN_PROGRESS, a wait given up, and `with`.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeployLock, type Held, LockWaitAbandoned } from '../../deployments/lock.ts';
import { FnixError } from '../../runtime/errors.ts';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('DeployLock', () => {
  it('has one holder at a time, and hands it on to waiters in order', async () => {
    const lock = new DeployLock();
    const first = await lock.acquire('first', 1000);
    expect(lock.holder).toBe('first');
    const order: string[] = [];
    const granted = (held: Held) => {
      order.push(held.name);
      return held;
    };
    const second = lock.acquire('second', 1000).then(granted);
    const third = lock.acquire('third', 1000).then(granted);
    await vi.advanceTimersByTimeAsync(10);
    expect(order).toEqual([]);
    first.release();
    (await second).release();
    (await third).release();
    expect(order).toEqual(['second', 'third']);
    expect(lock.holder).toBeUndefined();
  });

  it('tells a waiter who holds it, once', async () => {
    const lock = new DeployLock();
    const held = await lock.acquire('the push of 1a2b3c4d5e6f', 1000);
    const told: string[] = [];
    const waiting = lock.acquire('a rollback', 1000, (holder) => told.push(holder));
    held.release();
    (await waiting).release();
    expect(told).toEqual(['the push of 1a2b3c4d5e6f']);
  });

  it('fails a wait that is too long with DEPLOY_IN_PROGRESS, naming the holder, and leaves the queue', async () => {
    const lock = new DeployLock();
    const held = await lock.acquire('a long build', 60_000);
    const waiting = lock.acquire('impatient', 500).catch((error: unknown) => error);
    await vi.advanceTimersByTimeAsync(499);
    const late = lock.acquire('next', 60_000);
    await vi.advanceTimersByTimeAsync(1);
    const error = (await waiting) as FnixError;
    expect(error).toBeInstanceOf(FnixError);
    expect(error.code).toBe('DEPLOY_IN_PROGRESS');
    expect(error.message).toContain('a long build');
    // The one that gave up is not granted the lock later: the next waiter is.
    held.release();
    expect((await late).name).toBe('next');
  });

  it('leaves the queue at once when the waiter is given up, before or while it waits', async () => {
    const lock = new DeployLock();
    const gone = new AbortController();
    gone.abort();
    await expect(lock.acquire('dead before', 1000, undefined, gone.signal)).rejects.toBeInstanceOf(LockWaitAbandoned);
    const held = await lock.acquire('holder', 1000);
    const leaving = new AbortController();
    const waiting = lock.acquire('dead push', 60_000, undefined, leaving.signal).catch((error: unknown) => error);
    const next = lock.acquire('live push', 60_000);
    leaving.abort();
    expect(await waiting).toBeInstanceOf(LockWaitAbandoned);
    held.release();
    expect((await next).name).toBe('live push');
  });

  it('ignores a second release', async () => {
    const lock = new DeployLock();
    const held = await lock.acquire('a', 1000);
    const b = lock.acquire('b', 1000);
    held.release();
    const heldB = await b;
    held.release(); // must not hand the lock on from b
    expect(lock.holder).toBe('b');
    heldB.release();
  });

  it('runs an operation holding the lock, and releases it whatever the operation does', async () => {
    const lock = new DeployLock();
    await expect(lock.with('failing', 1000, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(lock.holder).toBeUndefined();
    expect(await lock.with('working', 1000, async (held) => held.name)).toBe('working');
    expect(lock.holder).toBeUndefined();
  });
});
