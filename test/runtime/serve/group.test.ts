/**
 * @module
 * runtime/serve/group.ts with fake instances: which slot a request takes, how far an instance is
 * loaded, the line and its deadlines, when instances are started and stopped, warm(), failed starts
 * and their backoff, replacement of instances that end, release({ replace }), and drain().
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FnixError } from '../../../runtime/errors.ts';
import { REFILL_BACKOFF_MIN_MS } from '../../../runtime/pool/refill.ts';
import { CRASH_LOOP_MS, isRetired, type Slot } from '../../../runtime/serve/group.ts';
import { settle, useFakeClock, useRealClock } from '../pool/fakes.ts';
import { type FakeInstance, fake, makeGroup, outcomeOf } from './fakes.ts';

beforeEach(useFakeClock);
afterEach(useRealClock);

/** Follows a promise: whether it has settled yet, and with what. */
function track<T>(promise: Promise<T>) {
  const seen: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => {
      seen.settled = true;
      seen.value = value;
    },
    (error: unknown) => {
      seen.settled = true;
      seen.error = error;
    },
  );
  return seen;
}

/** The instance a slot is in. */
function of(slot: Slot): FakeInstance {
  return fake(slot.instance);
}

describe('which slot a request takes', () => {
  it('takes the least loaded ready instance, the oldest of equals', async () => {
    const { group, starter } = makeGroup({ minInstances: 3, maxInstances: 3, concurrency: 2 });
    await group.warm();
    const [i0, i1, i2] = starter.instances;
    const a = await group.acquire();
    const b = await group.acquire();
    const c = await group.acquire();
    expect([of(a), of(b), of(c)]).toEqual([i0, i1, i2]);
    const d = await group.acquire();
    expect(of(d)).toBe(i0);
    b.release();
    expect(of(await group.acquire())).toBe(i1);
    expect(i0!.requests).toBe(2);
    expect(group.inFlight).toBe(4);
  });

  it('skips instances that are stopping', async () => {
    const { group, starter } = makeGroup({ minInstances: 2, maxInstances: 2 });
    starter.endOnStop = false;
    await group.warm();
    const [i0, i1] = starter.instances;
    i0!.stop('test');
    expect(of(await group.acquire())).toBe(i1);
  });

  it('gives one instance at most `concurrency` requests, and starts no instance past maxInstances', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 1, concurrency: 2 });
    await group.warm();
    const [i0] = starter.instances;
    const slots = [await group.acquire(), await group.acquire()];
    expect(slots.map(of)).toEqual([i0, i0]);
    const third = track(group.acquire());
    await settle();
    expect(third.settled).toBe(false);
    expect(i0!.inFlight).toBe(2);
    expect(group.queued).toBe(1);
    expect(starter.starts).toHaveLength(1);
    slots[0]!.release();
    await settle();
    expect(of(third.value!)).toBe(i0);
    expect(i0!.inFlight).toBe(2);
  });

  it('counts a slot released twice once', async () => {
    const { group, starter } = makeGroup({ concurrency: 2, maxInstances: 1 });
    await group.warm();
    const slot = await group.acquire();
    await group.acquire();
    slot.release();
    slot.release();
    expect(starter.instances[0]!.inFlight).toBe(1);
  });
});

describe('the line', () => {
  it('serves waiting requests in the order they came, as slots come free', async () => {
    const { group } = makeGroup({ maxInstances: 1 });
    await group.warm();
    const busy = await group.acquire();
    const order: string[] = [];
    const waiting = ['first', 'second', 'third'].map((name) =>
      group.acquire().then((slot) => {
        order.push(name);
        return slot;
      }),
    );
    await settle();
    expect(group.queued).toBe(3);
    busy.release();
    (await waiting[0]!).release();
    (await waiting[1]!).release();
    await waiting[2];
    expect(order).toEqual(['first', 'second', 'third']);
    expect(group.queued).toBe(0);
  });

  it('answers NO_CAPACITY, with the bound and the timeout, once queueTimeoutMs have passed', async () => {
    const { group } = makeGroup({ maxInstances: 1, concurrency: 2 }, { queueTimeoutMs: 1000 });
    await group.warm();
    await group.acquire();
    await group.acquire();
    const waiting = track(group.acquire());
    await vi.advanceTimersByTimeAsync(999);
    expect(waiting.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(waiting.error).toBeInstanceOf(FnixError);
    expect(waiting.error).toMatchObject({
      code: 'NO_CAPACITY',
      details: { function: 'web', instances: 1, maxInstances: 1, concurrency: 2, queueTimeoutMs: 1000 },
    });
    expect(group.queued).toBe(0);
  });

  it('answers NO_CAPACITY at once, with the count, when maxQueue requests are waiting', async () => {
    const { group } = makeGroup({ maxInstances: 1 }, { maxQueue: 2, queueTimeoutMs: 1000 });
    await group.warm();
    await group.acquire();
    const waiting = [outcomeOf(() => group.acquire()), outcomeOf(() => group.acquire())];
    const error = await outcomeOf(() => group.acquire());
    expect(error).toBeInstanceOf(FnixError);
    expect(error).toMatchObject({ code: 'NO_CAPACITY', details: { function: 'web', queued: 2, maxInstances: 1 } });
    expect(group.queued).toBe(2);
    await vi.advanceTimersByTimeAsync(1000);
    expect(await Promise.all(waiting)).toMatchObject([{ code: 'NO_CAPACITY' }, { code: 'NO_CAPACITY' }]);
  });

  it('answers INVOCATION_ABORTED when the signal aborts while the request waits, or had already', async () => {
    const { group } = makeGroup({ maxInstances: 1 });
    await group.warm();
    const busy = await group.acquire();
    const controller = new AbortController();
    const waiting = track(group.acquire(controller.signal));
    await settle();
    controller.abort();
    await settle();
    expect(waiting.error).toMatchObject({ code: 'INVOCATION_ABORTED' });
    expect(group.queued).toBe(0);
    const early = await outcomeOf(() => group.acquire(AbortSignal.abort()));
    expect(early).toMatchObject({ code: 'INVOCATION_ABORTED' });
    // The slot that comes free goes to no aborted request.
    busy.release();
    expect(busy.instance.inFlight).toBe(0);
  });

  it('takes a free slot at once even when the signal has aborted (the signal is for waiting)', async () => {
    const { group } = makeGroup({ maxInstances: 1 });
    await group.warm();
    const slot = await outcomeOf(() => group.acquire(AbortSignal.abort()));
    expect(slot).toHaveProperty('instance');
  });
});

describe('scaling up', () => {
  it('starts instances only while the requests in line outnumber the slots being started, up to maxInstances', async () => {
    const { group, starter } = makeGroup({ minInstances: 0, maxInstances: 3, concurrency: 2 });
    starter.outcome = 'hold';
    const counts: number[] = [];
    const slots: Promise<Slot>[] = [];
    for (let i = 0; i < 7; i += 1) {
      slots.push(group.acquire());
      counts.push(starter.starts.length);
    }
    // 1 waiting: a start (2 slots); 3: a second; 5: a third; then maxInstances.
    expect(counts).toEqual([1, 1, 2, 2, 3, 3, 3]);
    expect(group.starting).toBe(3);
    for (const start of starter.held) start.ready();
    const got = await Promise.all(slots.slice(0, 6));
    const [i0, i1, i2] = starter.instances;
    expect(got.map(of)).toEqual([i0, i0, i1, i1, i2, i2]);
    expect(group.queued).toBe(1);
    expect(group.starting).toBe(0);
    expect(starter.starts).toHaveLength(3);
    got[3]!.release();
    expect(of(await slots[6]!)).toBe(i1);
  });

  it('starts no more when a queued request is covered by a ready instance freeing up', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 4 });
    await group.warm();
    const busy = await group.acquire();
    starter.outcome = 'hold';
    const waiting = group.acquire();
    expect(starter.starts).toHaveLength(2);
    busy.release();
    expect(of(await waiting)).toBe(starter.instances[0]);
    // The start under way completes into an idle instance, and nothing more is started.
    starter.held[0]!.ready();
    await settle();
    expect(starter.starts).toHaveLength(2);
    expect(group.instances.size).toBe(2);
  });
});

describe('idle instances', () => {
  it('stops instances idle for idleTimeoutMs down to minInstances while served, and never below', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 3, idleTimeoutMs: 1000 });
    await group.warm();
    const slots = [await group.acquire(), await group.acquire(), await group.acquire()];
    expect(new Set(slots.map(of)).size).toBe(3);
    for (const slot of slots) slot.release();
    await vi.advanceTimersByTimeAsync(999);
    expect(starter.instances.map((i) => i.state)).toEqual(['ready', 'ready', 'ready']);
    await vi.advanceTimersByTimeAsync(1);
    const states = starter.instances.map((i) => i.state);
    expect(states.filter((s) => s === 'ready')).toHaveLength(1);
    expect(states.filter((s) => s === 'stopped')).toHaveLength(2);
    for (const instance of starter.instances.filter((i) => i.state === 'stopped')) expect(instance.stopReason).toMatch(/idle for its idleTimeoutMs of 1000 ms/);
    expect(group.instances.size).toBe(1);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(group.instances.size).toBe(1);
    expect(starter.starts).toHaveLength(3);
  });

  it('counts idleness from the last request: a request in between restarts the wait', async () => {
    const { group, starter } = makeGroup({ minInstances: 0, maxInstances: 1, idleTimeoutMs: 1000 });
    (await group.acquire()).release();
    const [i0] = starter.instances;
    await vi.advanceTimersByTimeAsync(600);
    const slot = await group.acquire();
    await vi.advanceTimersByTimeAsync(2000);
    expect(i0!.state).toBe('ready');
    slot.release();
    await vi.advanceTimersByTimeAsync(999);
    expect(i0!.state).toBe('ready');
    await vi.advanceTimersByTimeAsync(1);
    expect(i0!.state).toBe('stopped');
  });

  it('stops every idle instance of a version that was never warmed (minInstances do not apply)', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 2, idleTimeoutMs: 1000 });
    (await group.acquire()).release();
    expect(starter.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(starter.instances[0]!.state).toBe('stopped');
    expect(group.instances.size).toBe(0);
    expect(starter.starts).toHaveLength(1);
  });
});

describe('warm()', () => {
  it('starts minInstances and resolves once they are ready', async () => {
    const { group, starter } = makeGroup({ minInstances: 2, maxInstances: 4 });
    starter.outcome = 'hold';
    const warm = track(group.warm());
    expect(starter.starts).toHaveLength(2);
    starter.starts[0]!.ready();
    await settle();
    expect(warm.settled).toBe(false);
    starter.starts[1]!.ready();
    await settle();
    expect(warm).toEqual({ settled: true, value: undefined });
    await expect(group.warm()).resolves.toBeUndefined();
    expect(starter.starts).toHaveLength(2);
  });

  it('resolves at once, starting nothing, with minInstances 0', async () => {
    const { group, starter } = makeGroup({ minInstances: 0 });
    await expect(group.warm()).resolves.toBeUndefined();
    expect(starter.starts).toHaveLength(0);
  });

  it('rejects with the start error when an instance cannot start, and reports it', async () => {
    const { group, starter, onStartFailed } = makeGroup({ minInstances: 2 });
    starter.outcomes.push('start', 'fail');
    const error = await group.warm().catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'SERVER_NOT_READY', message: expect.stringContaining('exited with code 3') });
    expect(onStartFailed).toHaveBeenCalledWith(error);
  });

  it('turns a start error that is no FnixError into SERVER_NOT_READY naming the function', async () => {
    const { group, starter } = makeGroup({ minInstances: 1 });
    starter.outcome = 'hold';
    const warm = group.warm().catch((e: unknown) => e);
    starter.starts[0]!.fail(new Error('podman said no'));
    const error = await warm;
    expect(error).toBeInstanceOf(FnixError);
    expect(error).toMatchObject({ code: 'SERVER_NOT_READY', message: expect.stringMatching(/'web'.*podman said no/) });
  });
});

describe('failed starts', () => {
  it('with nothing running, fails the requests in line at once with the start error, then backs off', async () => {
    const { group, starter } = makeGroup({ minInstances: 0, maxInstances: 1 });
    starter.outcome = 'hold';
    const waiting = [track(group.acquire()), track(group.acquire())];
    expect(starter.starts).toHaveLength(1);
    const error = new FnixError('SERVER_NOT_READY', "function 'web' did not start: it exited with code 3");
    starter.starts[0]!.fail(error);
    await settle();
    expect(waiting.map((w) => w.error)).toEqual([error, error]);
    expect(group.queued).toBe(0);
    // While it backs off, a request gets the same error at once and no start is made.
    expect(await outcomeOf(() => group.acquire())).toBe(error);
    await vi.advanceTimersByTimeAsync(REFILL_BACKOFF_MIN_MS - 1);
    expect(await outcomeOf(() => group.acquire())).toBe(error);
    expect(starter.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(starter.starts).toHaveLength(1);
    // Once the backoff has passed, a request starts an instance again.
    starter.outcome = 'start';
    const slot = await group.acquire();
    expect(starter.starts).toHaveLength(2);
    expect(of(slot)).toBe(starter.instances[0]);
  });

  it('doubles the backoff after each failure in a row', async () => {
    const { group, starter } = makeGroup({ minInstances: 0, maxInstances: 1 });
    starter.outcome = 'fail';
    await outcomeOf(() => group.acquire());
    await vi.advanceTimersByTimeAsync(REFILL_BACKOFF_MIN_MS);
    expect(await outcomeOf(() => group.acquire())).toMatchObject({ code: 'SERVER_NOT_READY' });
    expect(starter.starts).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(2 * REFILL_BACKOFF_MIN_MS - 1);
    await outcomeOf(() => group.acquire());
    expect(starter.starts).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    await outcomeOf(() => group.acquire());
    expect(starter.starts).toHaveLength(3);
  });

  it('keeps the requests in line while an instance is running, for it to serve', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 2 });
    await group.warm();
    const busy = await group.acquire();
    starter.outcome = 'hold';
    const waiting = track(group.acquire());
    expect(starter.starts).toHaveLength(2);
    starter.starts[1]!.fail();
    await settle();
    expect(waiting.settled).toBe(false);
    expect(group.queued).toBe(1);
    busy.release();
    await settle();
    expect(of(waiting.value!)).toBe(starter.instances[0]);
  });

  it('starts again after the backoff to keep minInstances, while served', async () => {
    const { group, starter } = makeGroup({ minInstances: 1 });
    starter.outcome = 'fail';
    await group.warm().catch(() => {});
    expect(starter.starts).toHaveLength(1);
    starter.outcome = 'start';
    await vi.advanceTimersByTimeAsync(REFILL_BACKOFF_MIN_MS - 1);
    expect(starter.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(starter.starts).toHaveLength(2);
    expect(group.instances.size).toBe(1);
  });
});

describe('instances that end', () => {
  it('replaces an instance that ended up to minInstances while served, and reports the end', async () => {
    const { group, starter, onEnded } = makeGroup({ minInstances: 2, maxInstances: 4 });
    await group.warm();
    const [i0] = starter.instances;
    vi.setSystemTime(Date.now() + CRASH_LOOP_MS);
    i0!.end();
    await settle();
    expect(onEnded).toHaveBeenCalledWith(i0);
    expect(starter.starts).toHaveLength(3);
    expect(group.instances.size).toBe(2);
    expect(group.instances.has(i0 as never)).toBe(false);
  });

  it('does not replace an instance of a version that was never warmed, unless requests wait', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 1 });
    const slot = await group.acquire();
    const waiting = group.acquire();
    vi.setSystemTime(Date.now() + CRASH_LOOP_MS);
    of(slot).end();
    await settle();
    expect(starter.starts).toHaveLength(2);
    expect(of(await waiting)).toBe(starter.instances[1]);
    starter.instances[1]!.end();
    await settle();
    expect(starter.starts).toHaveLength(2);
  });

  it('holds back the replacement of a server that dies soon after it became ready (a crash loop)', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 1 });
    await group.warm();
    starter.instances[0]!.end();
    await settle();
    const waiting = track(group.acquire());
    await settle();
    expect(starter.starts).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(REFILL_BACKOFF_MIN_MS);
    expect(starter.starts).toHaveLength(2);
    await settle();
    expect(of(waiting.value!)).toBe(starter.instances[1]);
  });

  it('release({ replace: true }) stops the instance, and a new one serves the line', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 1 });
    starter.endOnStop = false;
    await group.warm();
    const slot = await group.acquire();
    const waiting = track(group.acquire());
    slot.release({ replace: true });
    const [i0] = starter.instances;
    expect(i0!.state).toBe('stopping');
    expect(i0!.stopReason).toMatch(/timeoutMs/);
    // Stopping, it no longer counts against maxInstances.
    expect(starter.starts).toHaveLength(2);
    await settle();
    expect(of(waiting.value!)).toBe(starter.instances[1]);
    i0!.end();
    await settle();
    expect(group.instances.size).toBe(1);
    expect(starter.starts).toHaveLength(2);
  });
});

describe('drain()', () => {
  it('stops idle instances at once and busy ones when released, and resolves once all have ended', async () => {
    const { group, starter } = makeGroup({ minInstances: 2, maxInstances: 2 });
    starter.endOnStop = false;
    await group.warm();
    const [i0, i1] = starter.instances;
    const slot = await group.acquire();
    expect(of(slot)).toBe(i0);
    const drained = track(group.drain());
    expect(i1!.state).toBe('stopping');
    expect(i1!.stopReason).toMatch(/no longer served/);
    expect(i0!.state).toBe('ready');
    slot.release();
    expect(i0!.state).toBe('stopping');
    i1!.end();
    await settle();
    expect(drained.settled).toBe(false);
    i0!.end();
    await settle();
    expect(drained.settled).toBe(true);
    // Nothing replaced them.
    expect(starter.starts).toHaveLength(2);
  });

  it('tells the requests already in line that the version is retired, finishes the one it holds, then stops', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 1 });
    await group.warm();
    const [i0] = starter.instances;
    const first = await group.acquire();
    const second = group.acquire();
    await settle();
    const drained = track(group.drain());
    // The one in line takes the version served now (gateway/proxy/http.ts acquireServed), not a busy old instance.
    await expect(second).rejects.toSatisfy(isRetired);
    expect(i0!.state).toBe('ready');
    first.release();
    await settle();
    expect(i0!.state).toBe('stopped');
    expect(drained.settled).toBe(true);
  });

  it('stops an instance whose start was under way once it is ready, and waits for it', async () => {
    const { group, starter } = makeGroup({ minInstances: 1 });
    starter.outcome = 'hold';
    const warm = track(group.warm());
    const drained = track(group.drain());
    await settle();
    expect(warm.error).toSatisfy(isRetired);
    expect(drained.settled).toBe(false);
    starter.starts[0]!.ready();
    await settle();
    expect(starter.instances[0]!.state).toBe('stopped');
    expect(drained.settled).toBe(true);
  });

  it('resolves at once with no instances, and refuses later requests with a retired error', async () => {
    const { group, starter } = makeGroup({ minInstances: 1 });
    await group.warm();
    await group.drain();
    expect(group.instances.size).toBe(0);
    const error = await outcomeOf(() => group.acquire());
    expect(error).toBeInstanceOf(FnixError);
    expect(error).toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(isRetired(error)).toBe(true);
    expect(starter.starts).toHaveLength(1);
    await expect(makeGroup({ minInstances: 0 }).group.drain()).resolves.toBeUndefined();
  });

  it('lets a request that finds a free slot of a draining instance take it, and retires one that finds none', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 2, concurrency: 2 });
    await group.warm();
    const [i0] = starter.instances;
    const held = await group.acquire();
    const drained = track(group.drain());
    const late = await group.acquire();
    expect(of(late)).toBe(i0);
    await expect(group.acquire()).rejects.toSatisfy(isRetired);
    await settle();
    expect(starter.starts).toHaveLength(1);
    held.release();
    late.release();
    await settle();
    expect(drained.settled).toBe(true);
  });

  it('isRetired() is false for other errors, even SHUTTING_DOWN without the mark', () => {
    expect(isRetired(new FnixError('NO_CAPACITY', 'busy'))).toBe(false);
    expect(isRetired(new FnixError('SHUTTING_DOWN', 'fnix is shutting down'))).toBe(false);
    expect(isRetired(new Error('retired'))).toBe(false);
  });
});

describe('stopAll()', () => {
  it('stops every instance and fails the requests in line with the error given', async () => {
    const { group, starter } = makeGroup({ minInstances: 1, maxInstances: 1 });
    await group.warm();
    await group.acquire();
    const waiting = outcomeOf(() => group.acquire());
    const error = new FnixError('SHUTTING_DOWN', 'fnix is shutting down');
    group.stopAll('fnix is shutting down', error);
    expect(await waiting).toBe(error);
    expect(starter.instances[0]!.state).toBe('stopped');
  });
});
