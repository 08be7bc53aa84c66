/**
 * @module
 * runtime/pool/busy-set.ts: whenEmpty resolves when the last busy container goes, or at its deadline.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Container } from '../../../runtime/container/container.ts';
import { BusySet } from '../../../runtime/pool/busy-set.ts';
import { FakeContainer, useFakeClock, useRealClock } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

const container = () => new FakeContainer({ network: false, storeGeneration: 0 }) as unknown as Container;

describe('BusySet.whenEmpty', () => {
  it('resolves at once when empty, or when the deadline is not positive', async () => {
    const busy = new BusySet();
    await busy.whenEmpty(1000);
    busy.add(container());
    await busy.whenEmpty(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('resolves when the last container goes, and clears its deadline', async () => {
    const busy = new BusySet();
    const [first, second] = [container(), container()];
    busy.add(first);
    busy.add(second);
    let done = false;
    void busy.whenEmpty(1000).then(() => {
      done = true;
    });
    busy.delete(first);
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(false);
    expect(busy.delete(second)).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    expect(busy.delete(second)).toBe(false);
  });

  it('resolves at the deadline when containers are still busy', async () => {
    const busy = new BusySet();
    busy.add(container());
    let done = false;
    void busy.whenEmpty(500).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(499);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(true);
    expect(busy.size).toBe(1);
  });
});
