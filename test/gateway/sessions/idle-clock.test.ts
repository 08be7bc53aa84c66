/**
 * @module
 * A session's idle clock (gateway/sessions/idle-clock.ts) on a fake clock: it ends a quiet session after
 * its timeout, traffic starts the stretch again, it fires once, and not at all once stopped.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startIdleClock } from '../../../gateway/sessions/idle-clock.ts';

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('startIdleClock', () => {
  it('calls onIdle once timeoutMs has passed without traffic, and not before', () => {
    const onIdle = vi.fn();
    startIdleClock({ timeoutMs: 1000, onIdle });
    vi.advanceTimersByTime(999);
    expect(onIdle).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(onIdle).toHaveBeenCalledOnce();
  });

  it('starts the quiet stretch again at each touch', () => {
    const onIdle = vi.fn();
    const clock = startIdleClock({ timeoutMs: 1000, onIdle });
    for (let i = 0; i < 5; i++) {
      vi.advanceTimersByTime(600);
      clock.touch();
    }
    expect(onIdle).not.toHaveBeenCalled(); // 3 s in, never 1 s quiet
    vi.advanceTimersByTime(999);
    expect(onIdle).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(onIdle).toHaveBeenCalledOnce();
  });

  it('keeps one timer however much traffic there is', () => {
    const clock = startIdleClock({ timeoutMs: 1000, onIdle: () => {} });
    for (let i = 0; i < 10_000; i++) clock.touch();
    expect(vi.getTimerCount()).toBe(1);
  });

  it('fires once, and leaves no timer behind', () => {
    const onIdle = vi.fn();
    startIdleClock({ timeoutMs: 1000, onIdle });
    vi.advanceTimersByTime(10_000);
    expect(onIdle).toHaveBeenCalledOnce();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never fires once stopped, even after a touch had set it again', () => {
    const onIdle = vi.fn();
    const clock = startIdleClock({ timeoutMs: 1000, onIdle });
    vi.advanceTimersByTime(500);
    clock.touch();
    vi.advanceTimersByTime(700); // the first check found 700 ms quiet and set itself again
    clock.stop();
    vi.advanceTimersByTime(10_000);
    expect(onIdle).not.toHaveBeenCalled();
    expect(vi.getTimerCount()).toBe(0);
  });
});
