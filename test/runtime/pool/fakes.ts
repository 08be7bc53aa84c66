/**
 * @module
 * Fakes for the pool's unit tests: a {@link FakeContainer} with the few members the pool uses, a
 * {@link FakeSource} whose starts succeed, fail or wait as a test says, a function version with the
 * fields the pool reads, and a fake clock that lru-cache's TTLs follow too.
 */
import { vi } from 'vitest';
import type { Container } from '../../../runtime/container/container.ts';
import type { LaunchRequest } from '../../../runtime/container/launcher.ts';
import type { FunctionVersion } from '../../../runtime/functions/version.ts';
import { Pool, type ContainerSource, type PoolOptions } from '../../../runtime/pool/pool.ts';

/** A container as the pool sees it: no process, no agent. */
export class FakeContainer {
  static #started = 0;
  readonly name: string;
  readonly network: boolean;
  readonly storeGeneration: number;
  specializedFor: string | undefined;
  lastUsedAt = Date.now();
  isAlive = true;
  readonly exited: Promise<void>;
  readonly specialize = vi.fn(async (fn: FunctionVersion) => {
    this.specializedFor = fn.key;
  });
  readonly stopInvocation = vi.fn((_reason: string) => {});
  #exit!: () => void;

  constructor(request: LaunchRequest) {
    FakeContainer.#started += 1;
    this.name = `fake-${FakeContainer.#started}`;
    this.network = request.network;
    this.storeGeneration = request.storeGeneration;
    this.exited = new Promise((resolve) => {
      this.#exit = resolve;
    });
  }

  /** Ends the container, as when its agent's connection closes. */
  die(): void {
    this.isAlive = false;
    this.#exit();
  }
}

/** The fake behind a {@link Container} the pool handed out. */
export function fake(container: Container): FakeContainer {
  return container as unknown as FakeContainer;
}

/** How a start goes: at once with a container, at once with an error, or when the test says. */
export type Outcome = 'start' | 'fail' | 'hold';

/** One call of launch. */
export interface Launch {
  request: LaunchRequest;
  /** The container, once started. */
  container: FakeContainer | undefined;
  start(): FakeContainer;
  fail(error?: Error): void;
}

/** A launcher without Podman: it records starts and removals. */
export class FakeSource implements ContainerSource {
  readonly launches: Launch[] = [];
  readonly removed: { container: FakeContainer; reason: string }[] = [];
  readonly drain = vi.fn(async () => {});
  /** How the next starts go, in turn; then {@link FakeSource.outcome}. */
  readonly outcomes: Outcome[] = [];
  outcome: Outcome = 'start';

  launch(request: LaunchRequest): Promise<Container> {
    let resolve!: (container: Container) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<Container>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const launch: Launch = {
      request,
      container: undefined,
      start: () => {
        launch.container = new FakeContainer(request);
        resolve(launch.container as unknown as Container);
        return launch.container;
      },
      fail: (error = new Error('podman run failed')) => reject(error),
    };
    this.launches.push(launch);
    const outcome = this.outcomes.shift() ?? this.outcome;
    if (outcome === 'start') launch.start();
    else if (outcome === 'fail') launch.fail();
    return promise;
  }

  remove(container: Container, reason: string): void {
    this.removed.push({ container: fake(container), reason });
  }

  /** The reasons given for each removal, in order. */
  get reasons(): string[] {
    return this.removed.map((r) => r.reason);
  }
}

/** A function version with only what the pool reads: its key, its name and whether it has network. */
export function fnVersion(name: string, { version = '1', network = false } = {}): FunctionVersion {
  const fn: Pick<FunctionVersion, 'name' | 'version' | 'key'> & { manifest: { network: boolean } } = {
    name,
    version,
    key: `${name}@${version}`,
    manifest: { network },
  };
  return fn as FunctionVersion;
}

/** A pool over a new {@link FakeSource}; queue and idle deadlines as given, or the production defaults. */
export function makePool(options: Partial<PoolOptions> = {}): { pool: Pool; source: FakeSource } {
  const source = new FakeSource();
  return { pool: new Pool({ source, size: 0, maxContainers: 2, idleTtlMs: 300_000, queueTimeoutMs: 10_000, ...options }), source };
}

/**
 * Fakes timers and Date. lru-cache read `performance.now` from the global object it found when it
 * loaded, so that object's `now` follows the fake Date (faking `performance` would replace the object).
 */
export function useFakeClock(): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate', 'Date'] });
  vi.spyOn(performance, 'now').mockImplementation(() => Date.now());
}

/** Undoes {@link useFakeClock}. */
export function useRealClock(): void {
  vi.useRealTimers();
  vi.restoreAllMocks();
}

/** Lets promise callbacks run, and timers due now fire. */
export async function settle(): Promise<void> {
  await vi.advanceTimersByTimeAsync(0);
}
